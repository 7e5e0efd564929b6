// Package grpcapi serves herald.rules.v1.RulesService: dry-run evaluation,
// bundle validation and loading, the bundles in force, target resolution
// for the notification service, and the reachability check. Errors are
// platform/fault kinds; platform/grpcserver maps them to status codes.
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/authz/access"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/identity"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/rules/internal/app"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
	"github.com/herald-health/herald/services/rules/internal/domain/routing"
)

// MaxReachabilityHours bounds one reachability check (a year).
const MaxReachabilityHours = 366 * 24

// Server implements rulesv1.RulesServiceServer.
type Server struct {
	rulesv1.UnimplementedRulesServiceServer
	registry *app.Registry
	now      func() time.Time
	logger   *slog.Logger
	changes  *app.ChangeControl
	history  app.HistoryReader
}

// New returns the API over registry: bundles are proposed and reviewed
// through changes, and dry runs replay history.
func New(registry *app.Registry, now func() time.Time, logger *slog.Logger, changes *app.ChangeControl, history app.HistoryReader) *Server {
	return &Server{registry: registry, now: now, logger: logger, changes: changes, history: history}
}

func (s *Server) instant(ts *timestamppb.Timestamp, field string) (time.Time, error) {
	if ts == nil {
		return s.now(), nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, fault.Invalid("invalid request", fault.Violation{Field: field, Problem: err.Error()})
	}
	return ts.AsTime(), nil
}

func requireTenant(tenant string) error {
	if tenant == "" {
		return fault.Invalid("invalid request", fault.Violation{Field: "tenant", Problem: "is required: the trust's ODS code"})
	}
	return nil
}

func noBundle(err error, tenant string) error {
	if errors.Is(err, routing.ErrNoBundle) {
		return fault.NotFound(fmt.Sprintf("no policy bundle is active for tenant %s", tenant))
	}
	return err
}

// Evaluate is a dry run: the routing decision the service would append for
// this alert at this instant, and the full planned timeline.
func (s *Server) Evaluate(_ context.Context, req *rulesv1.EvaluateRequest) (*rulesv1.EvaluateResponse, error) {
	if err := requireTenant(req.GetTenant()); err != nil {
		return nil, err
	}
	at, err := s.instant(req.GetAt(), "at")
	if err != nil {
		return nil, err
	}
	ev, err := routing.Evaluate(s.registry.Snapshot(), routing.Input{Tenant: req.GetTenant(), Kind: routing.KindRaised, Details: req.GetDetails(), At: at})
	if err != nil {
		return nil, noBundle(err, req.GetTenant())
	}
	return EvaluationProto(ev), nil
}

// EvaluationProto converts an evaluation to its API form.
func EvaluationProto(ev routing.Evaluation) *rulesv1.EvaluateResponse {
	resp := &rulesv1.EvaluateResponse{Routed: ev.Routed, FailsafeAt: timestamppb.New(ev.FailsafeAt)}
	for _, c := range ev.Timeline {
		resp.Timeline = append(resp.Timeline, &rulesv1.PlannedContact{Step: c.Step, Repeat: c.Repeat, At: timestamppb.New(c.At), Recipient: c.Recipient, Channels: c.Channels})
	}
	for _, u := range ev.Unreached {
		resp.Unreached = append(resp.Unreached, &rulesv1.UnreachedSend{Step: u.Step, Repeat: u.Repeat, At: timestamppb.New(u.At), Problem: u.Problem})
	}
	return resp
}

func files(in []*rulesv1.BundleFile) []bundle.File {
	out := make([]bundle.File, len(in))
	for i, f := range in {
		out[i] = bundle.File{Name: f.GetName(), Content: f.GetContent()}
	}
	return out
}

func problemsProto(ps []bundle.Problem) []*rulesv1.BundleProblem {
	out := make([]*rulesv1.BundleProblem, len(ps))
	for i, p := range ps {
		out[i] = &rulesv1.BundleProblem{File: p.File, Path: p.Path, Problem: p.Problem}
	}
	return out
}

// parse parses and checks a bundle against the registry. File names are
// normalised to "<tenant>/<base name>", as the directory loader names them,
// so a bundle has one content hash however it arrives.
func (s *Server) parse(in []*rulesv1.BundleFile) (*bundle.Bundle, error) {
	fs := files(in)
	b, err := bundle.Parse(fs)
	if err != nil {
		return nil, err
	}
	normal := make([]bundle.File, len(fs))
	renamed := false
	for i, f := range fs {
		normal[i] = bundle.File{Name: b.Tenant + "/" + path.Base(f.Name), Content: f.Content}
		renamed = renamed || normal[i].Name != f.Name
	}
	if renamed {
		if b, err = bundle.Parse(normal); err != nil {
			return nil, err
		}
	}
	if err := s.registry.Check(b); err != nil {
		return nil, err
	}
	return b, nil
}

// ValidateBundle checks a bundle without loading it; the problems are in
// the response, not an error.
func (s *Server) ValidateBundle(_ context.Context, req *rulesv1.ValidateBundleRequest) (*rulesv1.ValidateBundleResponse, error) {
	b, err := s.parse(req.GetFiles())
	if err != nil {
		ps := bundle.Problems(err)
		if ps == nil {
			return nil, err
		}
		return &rulesv1.ValidateBundleResponse{Problems: problemsProto(ps)}, nil
	}
	return &rulesv1.ValidateBundleResponse{Ref: &eventsv1.PolicyRef{Version: b.Version, ContentHash: b.Hash}}, nil
}

// LoadBundle is ProposeBundle under its former name: a bundle loaded
// through the API is only proposed (policy change control); a second
// person approves it with ApproveBundle.
func (s *Server) LoadBundle(ctx context.Context, req *rulesv1.LoadBundleRequest) (*rulesv1.LoadBundleResponse, error) {
	p, err := s.propose(ctx, req.GetFiles())
	if err != nil {
		return nil, err
	}
	return &rulesv1.LoadBundleResponse{Ref: &eventsv1.PolicyRef{Version: p.Version, ContentHash: p.Hash}}, nil
}

// GetActiveBundle returns the tenant's bundle in force with its files.
func (s *Server) GetActiveBundle(_ context.Context, req *rulesv1.GetActiveBundleRequest) (*rulesv1.GetActiveBundleResponse, error) {
	if err := requireTenant(req.GetTenant()); err != nil {
		return nil, err
	}
	v, ok := s.registry.Active(req.GetTenant())
	if !ok {
		return nil, fault.NotFound(fmt.Sprintf("no policy bundle is active for tenant %s", req.GetTenant()))
	}
	resp := &rulesv1.GetActiveBundleResponse{Ref: &eventsv1.PolicyRef{Version: v.Bundle.Version, ContentHash: v.Bundle.Hash}}
	if !v.LoadedAt.IsZero() {
		resp.LoadedAt = timestamppb.New(v.LoadedAt)
	}
	for _, f := range v.Bundle.Files {
		resp.Files = append(resp.Files, &rulesv1.BundleFile{Name: f.Name, Content: f.Content})
	}
	return resp, nil
}

// ListBundleVersions lists the versions loaded since start, newest first.
func (s *Server) ListBundleVersions(_ context.Context, req *rulesv1.ListBundleVersionsRequest) (*rulesv1.ListBundleVersionsResponse, error) {
	if err := requireTenant(req.GetTenant()); err != nil {
		return nil, err
	}
	active, _ := s.registry.Snapshot().Bundle(req.GetTenant())
	resp := &rulesv1.ListBundleVersionsResponse{}
	for _, v := range s.registry.Versions(req.GetTenant()) {
		resp.Versions = append(resp.Versions, &rulesv1.BundleVersion{
			Ref:      &eventsv1.PolicyRef{Version: v.Bundle.Version, ContentHash: v.Bundle.Hash},
			LoadedAt: timestamppb.New(v.LoadedAt),
			Active:   v.Bundle == active,
		})
	}
	return resp, nil
}

// ResolveTargets turns a step's targets into people with their contact
// points in order of preference, at the instant (now when unset). A target
// that resolves to nobody is left out; an empty answer means nobody.
func (s *Server) ResolveTargets(ctx context.Context, req *rulesv1.ResolveTargetsRequest) (*rulesv1.ResolveTargetsResponse, error) {
	if err := requireTenant(req.GetTenant()); err != nil {
		return nil, err
	}
	if len(req.GetTargets()) == 0 {
		return nil, fault.Invalid("invalid request", fault.Violation{Field: "targets", Problem: "is required: at least one target"})
	}
	for i, t := range req.GetTargets() {
		if t.GetKind() == eventsv1.TargetKind_TARGET_KIND_UNSPECIFIED {
			return nil, fault.Invalid("invalid request", fault.Violation{Field: fmt.Sprintf("targets[%d].kind", i), Problem: "is required"})
		}
	}
	at, err := s.instant(req.GetAt(), "at")
	if err != nil {
		return nil, err
	}
	res, err := routing.Resolve(s.registry.Snapshot(), req.GetTenant(), req.GetTargets(), at, req.GetReferrer())
	if err != nil {
		return nil, noBundle(err, req.GetTenant())
	}
	if len(res.People) == 0 {
		s.logger.WarnContext(ctx, "targets resolve to nobody", "tenant", req.GetTenant(), "alert_id", req.GetAlertId(), "problems", len(res.Problems))
	}
	// Staff phone numbers and email addresses go only to the notification
	// service and to operators and policy administrators of the trust;
	// anyone else allowed the method learns who, not how to reach them.
	caller, _ := identity.FromContext(ctx)
	contacts := access.ContactDetails(caller, req.GetTenant())
	resp := &rulesv1.ResolveTargetsResponse{}
	for _, p := range res.People {
		rr := &rulesv1.ResolvedRecipient{Recipient: p.Recipient()}
		for _, c := range p.Contacts {
			if !contacts {
				break
			}
			rr.ContactPoints = append(rr.ContactPoints, &rulesv1.ContactPoint{Channel: c.Channel, Address: c.Address})
		}
		resp.Recipients = append(resp.Recipients, rr)
	}
	return resp, nil
}

// CheckReachability checks every step of every policy of the tenant at
// every hour of the window (a week from now by default).
func (s *Server) CheckReachability(_ context.Context, req *rulesv1.CheckReachabilityRequest) (*rulesv1.CheckReachabilityResponse, error) {
	if err := requireTenant(req.GetTenant()); err != nil {
		return nil, err
	}
	from, err := s.instant(req.GetFrom(), "from")
	if err != nil {
		return nil, err
	}
	hours := int(req.GetHours())
	switch {
	case hours == 0:
		hours = 7 * 24
	case hours > MaxReachabilityHours:
		return nil, fault.Invalid("invalid request", fault.Violation{Field: "hours", Problem: fmt.Sprintf("must be at most %d", MaxReachabilityHours)})
	}
	gaps, err := routing.CheckReachability(s.registry.Snapshot(), req.GetTenant(), from, hours)
	if err != nil {
		return nil, noBundle(err, req.GetTenant())
	}
	resp := &rulesv1.CheckReachabilityResponse{}
	for _, g := range gaps {
		resp.Gaps = append(resp.Gaps, &rulesv1.ReachabilityGap{PolicyId: g.PolicyID, Step: g.Step, At: timestamppb.New(g.At), Problem: g.Problem})
	}
	return resp, nil
}

// invalidBundle turns bundle problems into InvalidArgument naming
// file:path of each; other errors pass.
func invalidBundle(err error) error {
	ps := bundle.Problems(err)
	if ps == nil {
		return err
	}
	vs := make([]fault.Violation, len(ps))
	for i, p := range ps {
		field := p.File
		if p.Path != "" {
			field += ":" + p.Path
		}
		vs[i] = fault.Violation{Field: field, Problem: p.Problem}
	}
	return fault.Invalid("invalid policy bundle", vs...)
}

func (s *Server) propose(ctx context.Context, files []*rulesv1.BundleFile) (app.Proposal, error) {
	if len(files) == 0 {
		return app.Proposal{}, fault.Invalid("invalid request", fault.Violation{Field: "files", Problem: "is required: the bundle's YAML files"})
	}
	b, err := s.parse(files)
	if err != nil {
		return app.Proposal{}, invalidBundle(err)
	}
	caller, _ := identity.FromContext(ctx)
	p, err := s.changes.Propose(ctx, caller, b)
	if err != nil {
		return app.Proposal{}, invalidBundle(err)
	}
	return p, nil
}

// ProposeBundle records the bundle as proposed by the calling person; it
// is not in force until a second person approves it.
func (s *Server) ProposeBundle(ctx context.Context, req *rulesv1.ProposeBundleRequest) (*rulesv1.ProposeBundleResponse, error) {
	p, err := s.propose(ctx, req.GetFiles())
	if err != nil {
		return nil, err
	}
	return &rulesv1.ProposeBundleResponse{Proposal: ProposalProto(p)}, nil
}

// ApproveBundle puts a proposed bundle in force (two-person rule).
func (s *Server) ApproveBundle(ctx context.Context, req *rulesv1.ApproveBundleRequest) (*rulesv1.ApproveBundleResponse, error) {
	caller, _ := identity.FromContext(ctx)
	p, active, err := s.changes.Approve(ctx, caller, req.GetTenant(), req.GetContentHash())
	if err != nil {
		return nil, err
	}
	return &rulesv1.ApproveBundleResponse{Proposal: ProposalProto(p), Active: active}, nil
}

// RejectBundle refuses (or, by its proposer, withdraws) a proposed bundle.
func (s *Server) RejectBundle(ctx context.Context, req *rulesv1.RejectBundleRequest) (*rulesv1.RejectBundleResponse, error) {
	caller, _ := identity.FromContext(ctx)
	p, err := s.changes.Reject(ctx, caller, req.GetTenant(), req.GetContentHash(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &rulesv1.RejectBundleResponse{Proposal: ProposalProto(p)}, nil
}

// ListPendingBundles lists the trust's proposals awaiting review.
func (s *Server) ListPendingBundles(ctx context.Context, req *rulesv1.ListPendingBundlesRequest) (*rulesv1.ListPendingBundlesResponse, error) {
	if err := requireTenant(req.GetTenant()); err != nil {
		return nil, err
	}
	caller, _ := identity.FromContext(ctx)
	ps, err := s.changes.Pending(ctx, caller, req.GetTenant())
	if err != nil {
		return nil, err
	}
	resp := &rulesv1.ListPendingBundlesResponse{}
	for _, p := range ps {
		resp.Proposals = append(resp.Proposals, ProposalProto(p))
	}
	return resp, nil
}

// Dry-run window bounds, in days.
const (
	DefaultDryRunDays = 7
	MaxDryRunDays     = 90
)

// DryRunBundle replays the trust's routings of the last days under a
// bundle (given as files, or a proposal named by tenant and content hash).
// The caller must hold policy-admin or safety-lead for the trust. The
// answer holds alert ids, tenant and categories, never patient data.
func (s *Server) DryRunBundle(ctx context.Context, req *rulesv1.DryRunBundleRequest) (*rulesv1.DryRunBundleResponse, error) {
	days := int(req.GetDays())
	switch {
	case days == 0:
		days = DefaultDryRunDays
	case days > MaxDryRunDays:
		return nil, fault.Invalid("invalid request", fault.Violation{Field: "days", Problem: fmt.Sprintf("must be at most %d", MaxDryRunDays)})
	}
	caller, _ := identity.FromContext(ctx)
	var b *bundle.Bundle
	switch {
	case len(req.GetFiles()) > 0:
		var err error
		if b, err = s.parse(req.GetFiles()); err != nil {
			return nil, invalidBundle(err)
		}
		if err := s.changes.Authorize(caller, b.Tenant); err != nil {
			return nil, err
		}
	case req.GetTenant() != "" && req.GetContentHash() != "":
		p, err := s.changes.Find(ctx, caller, req.GetTenant(), req.GetContentHash())
		if err != nil {
			return nil, err
		}
		if b, err = bundle.Parse(p.Files); err != nil {
			return nil, fault.Precondition(fmt.Sprintf("proposed bundle %s version %s no longer parses: %v", p.Tenant, p.Version, err))
		}
	default:
		return nil, fault.Invalid("invalid request", fault.Violation{Field: "files", Problem: "is required, or tenant and content_hash of a proposed bundle"})
	}
	since := s.now().Add(-time.Duration(days) * 24 * time.Hour)
	res, err := app.DryRun(ctx, s.history, s.registry, b, since, req.GetIncludeUnchanged())
	if err != nil {
		return nil, fault.Unavailable(fmt.Sprintf("dry run of bundle %s version %s: %v", b.Tenant, b.Version, err))
	}
	resp := &rulesv1.DryRunBundleResponse{Proposed: &eventsv1.PolicyRef{Version: b.Version, ContentHash: b.Hash}, Since: timestamppb.New(since),
		Replayed: uint32(res.Replayed), Changed: uint32(res.Changed)}
	for _, a := range res.Alerts {
		resp.Alerts = append(resp.Alerts, &rulesv1.DryRunAlert{AlertId: a.AlertID, Tenant: a.Tenant, RoutedAt: timestamppb.New(a.RoutedAt), Cause: a.Cause,
			Current: routingProto(a.Current), Proposed: routingProto(a.Proposed), Changed: len(a.Differences) > 0, Differences: a.Differences})
	}
	s.logger.InfoContext(ctx, "policy bundle dry run", "tenant", b.Tenant, "version", b.Version, "days", days, "replayed", res.Replayed, "changed", res.Changed)
	return resp, nil
}

func routingProto(r app.RoutingSummary) *rulesv1.DryRunRouting {
	out := &rulesv1.DryRunRouting{Category: r.Category, LocalCategory: r.Local, RuleId: r.RuleID, Policy: r.Policy,
		FirstStepTargets: r.FirstTargets, FirstStepRecipients: r.FirstRecipients,
		CommunicateWithin: app.DurationProto(r.Communicate), AcknowledgeWithin: app.DurationProto(r.Acknowledge), ActionWithin: app.DurationProto(r.Action)}
	for _, d := range r.StepTimeouts {
		out.StepTimeouts = append(out.StepTimeouts, durationpb.New(d))
	}
	return out
}

// ProposalProto converts a proposal to its API form.
func ProposalProto(p app.Proposal) *rulesv1.BundleProposal {
	out := &rulesv1.BundleProposal{Tenant: p.Tenant, Ref: &eventsv1.PolicyRef{Version: p.Version, ContentHash: p.Hash}, Proposer: p.Proposer,
		ProposedAt: timestamppb.New(p.ProposedAt), Round: p.Round, Outcome: p.Outcome, Reviewer: p.Reviewer, EventId: p.EventID}
	if !p.Pending() {
		out.ReviewedAt = timestamppb.New(p.ReviewedAt)
	}
	return out
}
