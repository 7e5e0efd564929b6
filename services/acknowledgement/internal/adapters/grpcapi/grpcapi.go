// Package grpcapi serves the acknowledgement service's gRPC API
// (herald.acknowledgement.v1.AcknowledgementService) on the application.
// Errors are fault kinds; platform/grpcserver maps them to status codes.
// Responses carry no patient data: AlertState holds identifiers, the
// category, clocks, the policy snapshot and the timeline summaries only.
// GetAlert with include_details adds the alert's details as the log holds
// them, the patient data sealed with the trust's key (platform/sealing),
// which this service does not hold; each such read is audited.
package grpcapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/authz"
	"github.com/herald-health/herald/platform/authz/access"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/identity"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Server implements AcknowledgementServiceServer.
type Server struct {
	ackv1.UnimplementedAcknowledgementServiceServer
	app  *app.App
	hub  *app.Hub
	refs alertref.Key
	// watches bounds the WatchAlerts streams per caller.
	watches *watchLimit
	// export assembles an alert's evidential record (nil: ExportAudit is
	// unavailable).
	export Exporter
}

// Exporter assembles the evidential record of one alert (audit.ExportAlert
// on the service's log and audit topics).
type Exporter func(ctx context.Context, alertID string) (*audit.Export, error)

// WithAuditExport serves ExportAudit with x. It returns s.
func (s *Server) WithAuditExport(x Exporter) *Server {
	s.export = x
	return s
}

// New returns the API on a (queries and commands) and hub (WatchAlerts);
// refs makes the alert reference every state carries (accession_ref).
func New(a *app.App, hub *app.Hub, refs alertref.Key) *Server {
	return &Server{app: a, hub: hub, refs: refs, watches: &watchLimit{max: DefaultMaxWatchesPerCaller, open: map[string]int{}}}
}

// LimitWatches sets how many WatchAlerts streams one caller may hold open
// at once (DefaultMaxWatchesPerCaller unless set; at least 1).
func (s *Server) LimitWatches(perCaller int) *Server {
	s.watches.max = max(perCaller, 1)
	return s
}

// slim returns st without the timeline and trace context (for lists,
// streams and command answers), with its reference.
func (s *Server) slim(st *lifecycle.State) *ackv1.AlertState {
	if st == nil {
		return nil
	}
	out := proto.Clone(st).(*ackv1.AlertState)
	out.Timeline = nil
	out.TraceContext = nil
	out.AccessionRef = s.refs.Ref(st.GetAlertId())
	return out
}

// Acknowledge implements the RPC.
func (s *Server) Acknowledge(ctx context.Context, r *ackv1.AcknowledgeRequest) (*ackv1.AcknowledgeResponse, error) {
	ctx, err := s.guard(ctx, access.Acknowledge)
	if err != nil {
		return nil, err
	}
	a, roleFor, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.app.Acknowledge(ctx, r.GetAlertId(), lifecycle.Acknowledge{Actor: a, RoleFor: roleFor, RequestID: r.GetRequestId(), Via: "grpc"})
	if err != nil {
		return nil, err
	}
	return &ackv1.AcknowledgeResponse{State: s.slim(o.State), EventId: o.EventID}, nil
}

// Decline implements the RPC.
func (s *Server) Decline(ctx context.Context, r *ackv1.DeclineRequest) (*ackv1.DeclineResponse, error) {
	ctx, err := s.guard(ctx, access.Decline)
	if err != nil {
		return nil, err
	}
	a, roleFor, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.app.Decline(ctx, r.GetAlertId(), lifecycle.Decline{Actor: a, RoleFor: roleFor, RequestID: r.GetRequestId(), Reason: r.GetReason(), Note: r.GetNote()})
	if err != nil {
		return nil, err
	}
	return &ackv1.DeclineResponse{State: s.slim(o.State), EventId: o.EventID}, nil
}

// RecordAction implements the RPC.
func (s *Server) RecordAction(ctx context.Context, r *ackv1.RecordActionRequest) (*ackv1.RecordActionResponse, error) {
	ctx, err := s.guard(ctx, access.RecordAction)
	if err != nil {
		return nil, err
	}
	a, roleFor, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.app.RecordAction(ctx, r.GetAlertId(), lifecycle.RecordAction{Actor: a, RoleFor: roleFor, RequestID: r.GetRequestId(), Action: r.GetAction()})
	if err != nil {
		return nil, err
	}
	return &ackv1.RecordActionResponse{State: s.slim(o.State), EventId: o.EventID}, nil
}

// MarkRead implements the RPC.
func (s *Server) MarkRead(ctx context.Context, r *ackv1.MarkReadRequest) (*ackv1.MarkReadResponse, error) {
	ctx, err := s.guard(ctx, access.MarkRead)
	if err != nil {
		return nil, err
	}
	a, roleFor, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.app.MarkRead(ctx, r.GetAlertId(), lifecycle.MarkRead{Actor: a, RoleFor: roleFor, RequestID: r.GetRequestId()})
	if err != nil {
		return nil, err
	}
	return &ackv1.MarkReadResponse{State: s.slim(o.State), EventId: o.EventID}, nil
}

// Close implements the RPC.
func (s *Server) Close(ctx context.Context, r *ackv1.CloseRequest) (*ackv1.CloseResponse, error) {
	ctx, err := s.guard(ctx, access.Close)
	if err != nil {
		return nil, err
	}
	a, roleFor, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.app.Close(ctx, r.GetAlertId(), lifecycle.Close{Actor: a, RoleFor: roleFor, RequestID: r.GetRequestId(), Reason: r.GetReason()})
	if err != nil {
		return nil, err
	}
	return &ackv1.CloseResponse{State: s.slim(o.State), EventId: o.EventID}, nil
}

// GetAlert implements the RPC: the state and its full timeline. The alert
// may be named by its id or by its reference (HRD-XXXX-XXXX-XXXX), as a
// person quotes it from a message.
func (s *Server) GetAlert(ctx context.Context, r *ackv1.GetAlertRequest) (*ackv1.GetAlertResponse, error) {
	id := r.GetAlertId()
	if alertref.Is(id) {
		var err error
		if id, err = s.byReference(ctx, id); err != nil {
			return nil, err
		}
	}
	st, err := s.app.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.mayRead(ctx, st); err != nil {
		return nil, err
	}
	resp := &ackv1.GetAlertResponse{State: s.slim(st), Timeline: st.GetTimeline()}
	if r.GetIncludeDetails() {
		if resp.Details, err = s.details(ctx, st); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// detailReaders are the roles that may read an alert's patient details: the
// people who act on it. A safety lead or an operator reads the alert, not
// the patient.
var detailReaders = []identity.Role{identity.RoleClinician, identity.RoleFailsafeOfficer}

// details returns the alert's details (the patient data sealed, as on the
// log) to a person who may read them, recording the read in the audit
// trail first.
func (s *Server) details(ctx context.Context, st *lifecycle.State) (*eventsv1.AlertDetails, error) {
	c, _ := identity.FromContext(ctx)
	p := c.Person
	if p == nil || !access.HasAny(p, st.GetTenant(), detailReaders...) {
		return nil, fault.PermissionDenied(fmt.Sprintf("the patient details of alert %s are for the clinicians and fail-safe officers of trust %s", st.GetAlertId(), st.GetTenant()))
	}
	role := ""
	for _, r := range detailReaders {
		if p.Has(st.GetTenant(), r) {
			role = string(r)
			break
		}
	}
	actor := &auditv1.AuditActor{PersonId: p.PersonID, Role: role, IdentityProvider: "oidc", Issuer: p.Issuer, Subject: p.Subject,
		Acr: p.ACR, RelayingService: c.Service}
	return s.app.Details(ctx, st, actor, viewID(p))
}

// viewID identifies a read of an alert's details for its audit record
// (audit.ViewedEntry makes the record's id of it and the alert's): the
// access token's id, so a retried call (the answer lost, the client
// calling again with the same token) is one record, not two. A token
// without an id gets a random view id: every call is recorded, at worst
// twice, never not at all.
func viewID(p *identity.Person) string {
	if p.TokenID != "" {
		return "token:" + p.Issuer + "|" + p.TokenID
	}
	return "random:" + rand.Text()
}

// ExportAudit implements the RPC: the evidential record of one alert (as
// heraldctl audit export writes it) for a safety lead or fail-safe officer
// of its trust, recorded in the audit trail as a read before it is
// answered. The alert's trust comes from the live projection, checked
// before the record is assembled; for an alert no longer there (closed and
// retired), from the record itself, checked before anything is answered.
func (s *Server) ExportAudit(ctx context.Context, r *ackv1.ExportAuditRequest) (*ackv1.ExportAuditResponse, error) {
	id := r.GetAlertId()
	if id == "" {
		return nil, fault.Invalid("export the audit record", fault.Violation{Field: "alert_id", Problem: "is required"})
	}
	if s.export == nil {
		return nil, fault.Unavailable("the audit export is not configured on this replica")
	}
	c, _ := identity.FromContext(ctx)
	off := c.Person == nil && authz.IsOff(ctx)
	decide := func(trust string) error {
		if off {
			return nil
		}
		return access.DecideAuditExport(c.Person, id, trust)
	}
	st, err := s.app.Get(ctx, id)
	switch {
	case err == nil:
		if err := decide(st.GetTenant()); err != nil {
			return nil, err
		}
	case errors.Is(err, fault.ErrNotFound):
		// Retired from the live store: the record names its trust.
	default:
		return nil, err
	}
	x, err := s.export(ctx, id)
	if errors.Is(err, audit.ErrNoEvents) {
		return nil, fault.NotFound("alert " + id + " not found")
	}
	if err != nil {
		return nil, fmt.Errorf("export the audit record of alert %s: %w: %w", id, fault.Unavailable("the log or the audit trail could not be read"), err)
	}
	if err := decide(x.Trust); err != nil {
		return nil, err
	}
	if !off {
		role := ""
		for _, r := range access.AuditExporters {
			if c.Person.Has(x.Trust, r) {
				role = string(r)
				break
			}
		}
		p := c.Person
		actor := &auditv1.AuditActor{PersonId: p.PersonID, Role: role, IdentityProvider: "oidc", Issuer: p.Issuer, Subject: p.Subject,
			Acr: p.ACR, RelayingService: c.Service}
		if err := s.app.RecordRead(ctx, audit.ViewedEntry(x.Trust, id, rand.Text(), "audit-export", actor, x.GeneratedAt)); err != nil {
			return nil, fmt.Errorf("export the audit record of alert %s: %w", id, err)
		}
	}
	out := &ackv1.ExportAuditResponse{Tenant: x.Trust}
	if out.Json, err = json.MarshalIndent(x, "", "  "); err != nil { // as heraldctl writes it (with its newline, below)
		return nil, fmt.Errorf("encode the audit record of alert %s: %w", id, err)
	}
	out.Json = append(out.Json, '\n')
	var page bytes.Buffer
	if err := audit.RenderExportHTML(&page, x); err != nil {
		return nil, err
	}
	out.Html = page.Bytes()
	return out, nil
}

// ListAlerts implements the RPC.
func (s *Server) ListAlerts(ctx context.Context, r *ackv1.ListAlertsRequest) (*ackv1.ListAlertsResponse, error) {
	scope := s.scope(ctx, r.GetTenant())
	if scope.Empty() {
		return &ackv1.ListAlertsResponse{}, nil // another trust's list is empty, not an error
	}
	f := app.ListFilter{States: r.GetStates(), Category: r.GetCategory(), OverdueOnly: r.GetOverdueOnly(), Assignee: r.GetAssignee(), Order: r.GetOrder()}
	switch {
	case scope.All:
		f.Tenant = r.GetTenant()
	case len(scope.Trusts) == 1:
		f.Tenant = scope.Trusts[0]
	default:
		f.Tenants = scope.Trusts
	}
	states, next, err := s.app.List(ctx, f, int(r.GetPageSize()), r.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &ackv1.ListAlertsResponse{NextPageToken: next}
	for _, st := range states {
		out.Alerts = append(out.Alerts, s.slim(st))
	}
	return out, nil
}

// WatchAlerts implements the RPC: every change of an alert of the tenant
// ("" for every trust the caller reads) until the client goes away. A slow client may miss changes.
// The response headers go out once changes flow: every change stored after
// the client has them reaches the stream.
func (s *Server) WatchAlerts(r *ackv1.WatchAlertsRequest, stream grpc.ServerStreamingServer[ackv1.WatchAlertsResponse]) error {
	ctx := stream.Context()
	caller := callerKey(ctx)
	if !s.watches.acquire(caller) {
		return status.Errorf(codes.ResourceExhausted,
			"too many WatchAlerts streams open for this caller (at most %d at once): close one before opening another", s.watches.max)
	}
	defer s.watches.release(caller)
	scope := s.scope(ctx, r.GetTenant())
	tenant := r.GetTenant()
	if !scope.All && len(scope.Trusts) == 1 {
		tenant = scope.Trusts[0]
	}
	ch, ready, cancel := s.hub.Watch(tenant)
	defer cancel()
	select {
	case <-ctx.Done():
		return nil
	case <-ready:
	}
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case st, ok := <-ch:
			if !ok {
				return nil
			}
			if !scope.Includes(st.GetTenant()) {
				continue // another trust's alert: never on this stream
			}
			if err := stream.Send(&ackv1.WatchAlertsResponse{State: s.slim(st)}); err != nil {
				return err
			}
		}
	}
}

// byReference finds the alert id of a reference. References are keyed
// hashes, so there is no way back but to compare: it pages through the
// alerts (an operator's lookup, not a hot path).
func (s *Server) byReference(ctx context.Context, ref string) (string, error) {
	ref = strings.ToUpper(strings.TrimSpace(ref))
	token := ""
	for {
		states, next, err := s.app.List(ctx, app.ListFilter{}, app.MaxPageSize, token)
		if err != nil {
			return "", err
		}
		for _, st := range states {
			if s.refs.Ref(st.GetAlertId()) == ref {
				return st.GetAlertId(), nil
			}
		}
		if next == "" || next == token {
			return "", fault.NotFound("no alert has reference " + ref)
		}
		token = next
	}
}

// Authorization (issue #20; platform/authz enforces the method table, the
// decisions are platform/authz/access). Every call reaches here with a
// caller: the interceptor refuses one without; a call with none (a server
// built without the interceptor) is refused here too.

// guard returns ctx carrying the check of a command: on the alert's fresh
// state, the caller must be a recipient of the alert or a fail-safe
// officer of its trust (a fail-safe officer of its trust alone for Close).
func (s *Server) guard(ctx context.Context, cmd access.Command) (context.Context, error) {
	c, ok := identity.FromContext(ctx)
	if !ok {
		return ctx, fault.Unauthenticated(cmd.String() + " alert: no verified caller")
	}
	if authz.IsOff(ctx) {
		return ctx, nil
	}
	return app.WithCheck(ctx, func(st *lifecycle.State) error {
		return access.DecideCommand(c.Person, cmd, access.Alert{ID: st.GetAlertId(), Tenant: st.GetTenant(), Recipients: lifecycle.Recipients(st)})
	}), nil
}

// scope is the trusts a list or stream asking for tenant returns to the
// caller ("" is the caller's trusts; nothing without a caller).
func (s *Server) scope(ctx context.Context, tenant string) access.Scope {
	c, _ := identity.FromContext(ctx)
	return access.ListScope(c.Person, tenant, access.AlertReaders...)
}

// mayRead is the read rule (access.DecideRead) for the caller on st: any
// reading role for the alert's trust, recipient or not.
func (s *Server) mayRead(ctx context.Context, st *lifecycle.State) error {
	c, _ := identity.FromContext(ctx)
	if c.Person == nil && authz.IsOff(ctx) {
		return nil
	}
	return access.DecideRead(c.Person, access.Alert{ID: st.GetAlertId(), Tenant: st.GetTenant(), Recipients: lifecycle.Recipients(st)})
}
