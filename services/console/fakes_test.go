package console_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/console/internal/web"
)

// ackPeer is an acknowledgement service speaking the real gRPC protocol
// over a real socket, with alerts in memory: it records each call and the
// bearer it carried. It does NOT filter by trust, so the tests prove the
// console's own wall between trusts.
type ackPeer struct {
	ackv1.UnimplementedAcknowledgementServiceServer
	mu      sync.Mutex
	alerts  map[string]*ackv1.AlertState
	details map[string]*eventsv1.AlertDetails
	calls   []string
	bearers []string
}

func (p *ackPeer) record(ctx context.Context, call string) {
	md, _ := metadata.FromIncomingContext(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, call)
	p.bearers = append(p.bearers, strings.Join(md.Get("authorization"), ","))
}

func (p *ackPeer) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

func (p *ackPeer) Bearers() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.bearers)
}

func (p *ackPeer) get(id string) (*ackv1.AlertState, error) {
	st, ok := p.alerts[id]
	if !ok {
		return nil, status.Error(codes.NotFound, "alert not found")
	}
	return st, nil
}

func (p *ackPeer) event(st *ackv1.AlertState, typ, person, summary string) {
	st.Timeline = append(st.Timeline, &ackv1.TimelineEntry{EventId: typ + "-" + st.GetAlertId(), Type: typ,
		At: timestamppb.Now(), PersonId: person, Summary: summary})
}

func (p *ackPeer) ListAlerts(ctx context.Context, r *ackv1.ListAlertsRequest) (*ackv1.ListAlertsResponse, error) {
	p.record(ctx, "ListAlerts "+r.GetTenant()+" "+r.GetAssignee())
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id := range p.alerts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if r.GetOrder() == ackv1.ListOrder_LIST_ORDER_DEADLINE_ASC {
		// As acknowledgement's deadline-order index: open alerts by their
		// next deadline (acknowledge-by until acknowledged, then
		// action-by, then the step's due time), then id; none last.
		key := func(st *ackv1.AlertState) int64 {
			c := st.GetClocks()
			switch {
			case st.GetAcknowledgedAt() == nil && c.GetAcknowledgeBy() != nil:
				return c.GetAcknowledgeBy().AsTime().UnixMilli()
			case st.GetActionedAt() == nil && c.GetActionBy() != nil:
				return c.GetActionBy().AsTime().UnixMilli()
			case st.GetStepDueAt() != nil:
				return st.GetStepDueAt().AsTime().UnixMilli()
			}
			return 1 << 52
		}
		ids = slices.DeleteFunc(ids, func(id string) bool {
			switch p.alerts[id].GetState() {
			case ackv1.State_STATE_CLOSED, ackv1.State_STATE_CANCELLED, ackv1.State_STATE_ACTIONED:
				return true
			}
			return false
		})
		slices.SortStableFunc(ids, func(a, b string) int { return cmp.Compare(key(p.alerts[a]), key(p.alerts[b])) })
	}
	start := 0
	if r.GetPageToken() != "" {
		start = slices.Index(ids, r.GetPageToken())
	}
	out := &ackv1.ListAlertsResponse{}
	for _, id := range ids[max(start, 0):] {
		st := p.alerts[id]
		if r.GetTenant() != "" && st.GetTenant() != r.GetTenant() {
			continue
		}
		if len(r.GetStates()) > 0 && !slices.Contains(r.GetStates(), st.GetState()) {
			continue
		}
		if a := r.GetAssignee(); a != "" && !slices.Contains(st.GetStepRecipients(), a) && st.GetAcknowledgedBy().GetPersonId() != a {
			continue
		}
		if len(out.Alerts) == int(r.GetPageSize()) {
			out.NextPageToken = id
			break
		}
		// As acknowledgement's ListAlerts: states without their timelines.
		slim := proto.Clone(st).(*ackv1.AlertState)
		slim.Timeline = nil
		out.Alerts = append(out.Alerts, slim)
	}
	return out, nil
}

func (p *ackPeer) GetAlert(ctx context.Context, r *ackv1.GetAlertRequest) (*ackv1.GetAlertResponse, error) {
	p.record(ctx, "GetAlert "+r.GetAlertId())
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.get(r.GetAlertId())
	if err != nil {
		return nil, err
	}
	resp := &ackv1.GetAlertResponse{State: proto.Clone(st).(*ackv1.AlertState), Timeline: st.GetTimeline()}
	if r.GetIncludeDetails() {
		resp.Details = p.details[r.GetAlertId()]
	}
	return resp, nil
}

func (p *ackPeer) MarkRead(ctx context.Context, r *ackv1.MarkReadRequest) (*ackv1.MarkReadResponse, error) {
	p.record(ctx, "MarkRead "+r.GetAlertId()+" "+personOf(ctx))
	return &ackv1.MarkReadResponse{}, nil
}

func (p *ackPeer) Acknowledge(ctx context.Context, r *ackv1.AcknowledgeRequest) (*ackv1.AcknowledgeResponse, error) {
	p.record(ctx, "Acknowledge "+r.GetAlertId()+" "+personOf(ctx))
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.get(r.GetAlertId())
	if err != nil {
		return nil, err
	}
	st.State, st.AcknowledgedAt, st.AcknowledgedBy = ackv1.State_STATE_ACKNOWLEDGED, timestamppb.Now(), &eventsv1.Actor{PersonId: personOf(ctx)}
	p.event(st, "AlertAcknowledged", personOf(ctx), "acknowledged")
	return &ackv1.AcknowledgeResponse{State: st}, nil
}

func (p *ackPeer) Decline(ctx context.Context, r *ackv1.DeclineRequest) (*ackv1.DeclineResponse, error) {
	p.record(ctx, "Decline "+r.GetAlertId()+" "+personOf(ctx)+" "+r.GetReason().String()+" "+r.GetNote())
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.get(r.GetAlertId())
	if err != nil {
		return nil, err
	}
	// Re-routed to the next step, as acknowledgement's lifecycle does.
	st.State, st.Step, st.StepRecipients = ackv1.State_STATE_ESCALATED, st.GetStep()+1, []string{"dr-next"}
	p.event(st, "AlertDeclined", personOf(ctx), "declined: "+r.GetReason().String())
	return &ackv1.DeclineResponse{State: st}, nil
}

func (p *ackPeer) RecordAction(ctx context.Context, r *ackv1.RecordActionRequest) (*ackv1.RecordActionResponse, error) {
	p.record(ctx, "RecordAction "+r.GetAlertId()+" "+r.GetAction())
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.get(r.GetAlertId())
	if err != nil {
		return nil, err
	}
	st.State, st.ActionedAt = ackv1.State_STATE_ACTIONED, timestamppb.Now()
	return &ackv1.RecordActionResponse{State: st}, nil
}

// ExportAudit answers as acknowledgement does for a safety lead or
// fail-safe officer of the alert's trust (the real rule and content are
// proved in services/acknowledgement), recording who asked.
func (p *ackPeer) ExportAudit(ctx context.Context, r *ackv1.ExportAuditRequest) (*ackv1.ExportAuditResponse, error) {
	p.record(ctx, "ExportAudit "+r.GetAlertId()+" "+personOf(ctx))
	id := r.GetAlertId()
	return &ackv1.ExportAuditResponse{Tenant: "RX1",
		Json: []byte(`{"alert_id": "` + id + `", "trust": "RX1", "proof": {"records": [], "chain_verified": true, "chain_head": 3}}` + "\n"),
		Html: []byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Evidential record of alert ` + id +
			`</title></head><body><main><h1 id="evidence-title">Evidential record of alert ` + id + `</h1><p>Chain verified.</p></main></body></html>`)}, nil
}

func (p *ackPeer) Close(ctx context.Context, r *ackv1.CloseRequest) (*ackv1.CloseResponse, error) {
	p.record(ctx, "Close "+r.GetAlertId()+" "+personOf(ctx)+" "+r.GetReason())
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.get(r.GetAlertId())
	if err != nil {
		return nil, err
	}
	st.State, st.ClosedAt = ackv1.State_STATE_CLOSED, timestamppb.Now()
	p.event(st, "AlertClosed", personOf(ctx), "closed: "+r.GetReason())
	return &ackv1.CloseResponse{State: st}, nil
}

// rulesPeer answers the policy dry run with a two-step plan, and keeps one
// pending bundle proposal of trust RX1 (proposed by pa-1) under the
// two-person rule as the rules service enforces it.
type rulesPeer struct {
	rulesv1.UnimplementedRulesServiceServer
	mu       sync.Mutex
	pending  map[string]*rulesv1.BundleProposal // by content hash
	reviews  []string
	proposer string
}

// pendingHash is the content hash of the test's pending proposal.
const pendingHash = "9f2c4e7a1b3d5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd"

func newRulesPeer() *rulesPeer {
	return &rulesPeer{proposer: "pa-1", pending: map[string]*rulesv1.BundleProposal{pendingHash: {
		Tenant: "RX1", Ref: &eventsv1.PolicyRef{PolicyId: "RX1-policy", Version: "v8", ContentHash: pendingHash},
		Proposer:   &eventsv1.PolicyPerson{Subject: "pa-1", PersonId: "pa-1", DisplayName: "Priya Policy", Role: "policy-admin"},
		ProposedAt: timestamppb.New(time.Now().Add(-time.Hour)), Round: 1, EventId: "proposed-1"}}}
}

func (p *rulesPeer) Reviews() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reviews)
}

func (p *rulesPeer) ListPendingBundles(_ context.Context, r *rulesv1.ListPendingBundlesRequest) (*rulesv1.ListPendingBundlesResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := &rulesv1.ListPendingBundlesResponse{}
	for _, b := range p.pending {
		if b.GetTenant() == r.GetTenant() {
			out.Proposals = append(out.Proposals, proto.Clone(b).(*rulesv1.BundleProposal))
		}
	}
	return out, nil
}

func (p *rulesPeer) DryRunBundle(_ context.Context, r *rulesv1.DryRunBundleRequest) (*rulesv1.DryRunBundleResponse, error) {
	if r.GetContentHash() != pendingHash || r.GetTenant() != "RX1" {
		return nil, status.Error(codes.NotFound, "no pending proposal with that content hash")
	}
	return &rulesv1.DryRunBundleResponse{Proposed: &eventsv1.PolicyRef{PolicyId: "RX1-policy", Version: "v8"},
		Since: timestamppb.New(time.Now().Add(-7 * 24 * time.Hour)), Replayed: 12, Changed: 1,
		Alerts: []*rulesv1.DryRunAlert{{AlertId: "alert-old-7", Tenant: "RX1", RoutedAt: timestamppb.Now(), Changed: true,
			Differences: []string{"first step dr-oncall -> consultant-radiologist"}}}}, nil
}

// caller is the person of the call's bearer (mockoidc's access token is a
// JWT whose subject is the person).
func caller(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	tok := strings.TrimPrefix(strings.Join(md.Get("authorization"), ""), "Bearer ")
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		return ""
	}
	sub, _ := claims.GetSubject()
	return sub
}

func (p *rulesPeer) ApproveBundle(ctx context.Context, r *rulesv1.ApproveBundleRequest) (*rulesv1.ApproveBundleResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.pending[r.GetContentHash()]
	if !ok || b.GetTenant() != r.GetTenant() {
		return nil, status.Error(codes.NotFound, "no pending proposal with that content hash")
	}
	who := caller(ctx)
	if who == b.GetProposer().GetSubject() {
		// The rules service's refusal, word for word in its essentials.
		return nil, status.Errorf(codes.PermissionDenied, "two-person rule: %s proposed bundle %s version %s and may not approve it; a second person holding policy-admin or safety-lead for %s must",
			who, r.GetTenant(), b.GetRef().GetVersion(), r.GetTenant())
	}
	p.reviews = append(p.reviews, "approved "+r.GetContentHash()+" by "+who)
	delete(p.pending, r.GetContentHash())
	return &rulesv1.ApproveBundleResponse{Proposal: b, Active: true}, nil
}

func (p *rulesPeer) RejectBundle(ctx context.Context, r *rulesv1.RejectBundleRequest) (*rulesv1.RejectBundleResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.pending[r.GetContentHash()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no pending proposal with that content hash")
	}
	p.reviews = append(p.reviews, "rejected "+r.GetContentHash()+" by "+caller(ctx)+": "+r.GetReason())
	delete(p.pending, r.GetContentHash())
	return &rulesv1.RejectBundleResponse{Proposal: b}, nil
}

func (*rulesPeer) Evaluate(_ context.Context, r *rulesv1.EvaluateRequest) (*rulesv1.EvaluateResponse, error) {
	at := r.GetAt().AsTime()
	return &rulesv1.EvaluateResponse{
		Routed: &eventsv1.AlertRouted{Category: r.GetDetails().GetSourceFlag().GetCategory(),
			Policy: &eventsv1.EscalationPolicy{Ref: &eventsv1.PolicyRef{PolicyId: r.GetTenant() + "-policy", Version: "v7"}}},
		Timeline: []*rulesv1.PlannedContact{
			{Step: 0, At: timestamppb.New(at), Recipient: &eventsv1.Recipient{PersonId: "dr-oncall"}, Channels: []eventsv1.Channel{eventsv1.Channel_CHANNEL_SMS}},
			{Step: 1, At: timestamppb.New(at.Add(15 * time.Minute)), Recipient: &eventsv1.Recipient{Role: "consultant-radiologist"}, Channels: []eventsv1.Channel{eventsv1.Channel_CHANNEL_EMAIL}},
		},
		FailsafeAt: timestamppb.New(at.Add(time.Hour)),
	}, nil
}

func (*rulesPeer) ListBundleVersions(_ context.Context, r *rulesv1.ListBundleVersionsRequest) (*rulesv1.ListBundleVersionsResponse, error) {
	return &rulesv1.ListBundleVersionsResponse{Versions: []*rulesv1.BundleVersion{{Ref: &eventsv1.PolicyRef{PolicyId: r.GetTenant() + "-policy", Version: "v7"}, LoadedAt: timestamppb.Now(), Active: true}}}, nil
}

// serveGRPC serves both peers on a loopback port.
func serveGRPC(t *testing.T, ack *ackPeer, rules *rulesPeer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	ackv1.RegisterAcknowledgementServiceServer(srv, ack)
	rulesv1.RegisterRulesServiceServer(srv, rules)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// reports is a Reporting with fixed figures.
type reports struct {
	asked    []web.ReportQuery
	searched []web.SearchQuery
}

func (r *reports) Compliance(_ context.Context, q web.ReportQuery) (web.ComplianceReport, error) {
	r.asked = append(r.asked, q)
	return web.ComplianceReport{Query: q,
		ByCategory: []web.ComplianceRow{{Group: "Critical", Alerts: 40, AckedInTarget: 38, Acked: 40, MedianAck: 9 * time.Minute, P90Ack: 41 * time.Minute, Breaches: 2},
			{Group: "Urgent", Alerts: 120, AckedInTarget: 101, Acked: 117, MedianAck: 3 * time.Hour, P90Ack: 20 * time.Hour, Breaches: 19}},
		ByTeam:     []web.ComplianceRow{{Group: "Respiratory", Alerts: 60, AckedInTarget: 55}, {Group: "Emergency", Alerts: 100, AckedInTarget: 84}},
		ByReferrer: []web.ComplianceRow{{Group: "dr-a", Alerts: 12, AckedInTarget: 12}},
		Weeks: []web.ComplianceRow{{Group: "2026-11-09", Alerts: 40, AckedInTarget: 35}, {Group: "2026-11-16", Alerts: 38, AckedInTarget: 33},
			{Group: "2026-11-23", Alerts: 42, AckedInTarget: 39}, {Group: "2026-11-30", Alerts: 40, AckedInTarget: 32}},
		Breaches:    []web.Count{{Label: "communicate", N: 3}, {Label: "acknowledge", N: 21}, {Label: "action", N: 4}},
		Declines:    []web.Count{{Label: "not my patient", N: 5}, {Label: "wrong team", N: 7}},
		Failsafe:    3,
		Quarantined: 2,
	}, nil
}

func (r *reports) RCRAudit(_ context.Context, q web.ReportQuery) (web.RCRReport, error) {
	return web.RCRReport{Query: q, Rows: []web.RCRRow{
		{Category: "Critical", Target: time.Hour, Numerator: 38, Denominator: 40, Standard: 100},
		{Category: "Urgent", Target: 24 * time.Hour, Numerator: 101, Denominator: 120, Standard: 90},
	}}, nil
}

// historyAlerts is the reporting store's history of the tests: one closed
// alert of trust RX1 (no longer in acknowledgement) and one of RX2.
var historyAlerts = []web.AlertHistory{
	{Summary: web.AlertSummary{ID: "hist-1", Trust: "RX1", Reference: "HRL-H1", Accession: "ACC-H1", Category: "CRITICAL",
		State: "closed", PolicyID: "RX1-policy", PolicyVersion: "v7", RaisedAt: time.Date(2026, 11, 3, 2, 0, 0, 0, time.UTC),
		AcknowledgedAt: time.Date(2026, 11, 3, 2, 20, 0, 0, time.UTC), ClosedAt: time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)},
		Events: []web.HistoryEvent{
			{EventID: "e1", Type: "AlertRaised", At: time.Date(2026, 11, 3, 2, 0, 0, 0, time.UTC)},
			{EventID: "e2", Type: "AlertRouted", At: time.Date(2026, 11, 3, 2, 0, 1, 0, time.UTC), PolicyID: "RX1-policy", PolicyVersion: "v7"},
			{EventID: "e3", Type: "NotificationSent", At: time.Date(2026, 11, 3, 2, 0, 2, 0, time.UTC), Recipient: "dr-a", Channel: "SMS", NotificationID: "n1", Delivery: "sent", Step: intp(0), Repeat: intp(0)},
			{EventID: "e4", Type: "NotificationDelivered", At: time.Date(2026, 11, 3, 2, 0, 9, 0, time.UTC), Channel: "SMS", NotificationID: "n1", Delivery: "delivered"},
			{EventID: "e5", Type: "NotificationFailed", At: time.Date(2026, 11, 3, 2, 0, 3, 0, time.UTC), Recipient: "dr-c", Channel: "EMAIL", NotificationID: "n2", Delivery: "failed", Reason: "permanent", Step: intp(0), Repeat: intp(0)},
			{EventID: "e6", Type: "AlertAcknowledged", At: time.Date(2026, 11, 3, 2, 20, 0, 0, time.UTC), ActorID: "dr-a", Name: "Dr Alice Example", Role: "clinician", Provider: "cis2", Step: intp(0)},
			{EventID: "e7", Type: "AlertClosed", At: time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC), ActorID: "fs-1", Name: "Fiona Failsafe", Role: "failsafe-officer", Provider: "cis2"},
		}},
	{Summary: web.AlertSummary{ID: "hist-b", Trust: "RX2", Reference: "HRL-HB", Accession: "ACC-H1", Category: "URGENT", State: "open",
		RaisedAt: time.Date(2026, 11, 4, 2, 0, 0, 0, time.UTC)},
		Events: []web.HistoryEvent{{EventID: "b1", Type: "AlertRaised", At: time.Date(2026, 11, 4, 2, 0, 0, 0, time.UTC)}}},
}

func intp(i int) *int { return &i }

// Search implements web.History over historyAlerts (the trust filter is
// the console's to pass: this store answers what it is asked).
func (r *reports) Search(_ context.Context, q web.SearchQuery) (web.SearchResult, error) {
	r.searched = append(r.searched, q)
	var out web.SearchResult
	for _, h := range historyAlerts {
		s := h.Summary
		if s.Trust != q.Trust || (q.Accession != "" && s.Accession != q.Accession) || (q.Reference != "" && !strings.EqualFold(s.Reference, q.Reference)) ||
			(!q.From.IsZero() && s.RaisedAt.Before(q.From)) || (!q.To.IsZero() && !s.RaisedAt.Before(q.To)) {
			continue
		}
		out.Alerts = append(out.Alerts, s)
	}
	return out, nil
}

// AlertHistory implements web.History.
func (r *reports) AlertHistory(_ context.Context, trust, id string) (web.AlertHistory, error) {
	for _, h := range historyAlerts {
		if h.Summary.ID == id && h.Summary.Trust == trust {
			return h, nil
		}
	}
	return web.AlertHistory{}, web.ErrNoHistory
}

// person is a mockoidc user with Herald's claims.
type person struct {
	sub, name string
	roles     []string
}

func (u person) ID() string { return u.sub }

func (u person) Userinfo([]string) ([]byte, error) {
	return json.Marshal(map[string]string{"sub": u.sub})
}

type personClaims struct {
	*mockoidc.IDTokenClaims
	Name  string   `json:"name"`
	Roles []string `json:"herald_roles"`
}

func (u person) Claims(_ []string, c *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	return &personClaims{IDTokenClaims: c, Name: u.name, Roles: u.roles}, nil
}

// personOf is the caller as the real service finds it: the subject of the
// bearer access token (the request carries no actor). The fake reads the
// token without verifying it.
func personOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	raw, _ := strings.CutPrefix(strings.Join(md.Get("authorization"), ""), "Bearer ")
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(b, &c)
	return c.Sub
}
