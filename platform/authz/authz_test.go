package authz

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/identity"
	"github.com/herald-health/herald/platform/telemetry"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
	notificationv1 "github.com/herald-health/herald/proto/gen/herald/notification/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
)

var update = flag.Bool("update", false, "rewrite the table in docs/authorization.md")

// registerAll registers the four services (unimplemented) on s, as their
// composition roots do.
func registerAll(s *grpc.Server) {
	ackv1.RegisterAcknowledgementServiceServer(s, ackv1.UnimplementedAcknowledgementServiceServer{})
	intakev1.RegisterIntakeServiceServer(s, intakev1.UnimplementedIntakeServiceServer{})
	notificationv1.RegisterNotificationServiceServer(s, notificationv1.UnimplementedNotificationServiceServer{})
	rulesv1.RegisterRulesServiceServer(s, rulesv1.UnimplementedRulesServiceServer{})
}

// TestEveryMethodIsInTheTable walks every method of every service a
// Herald server registers (the four APIs, health and, in development,
// reflection) and fails on one the table does not name, and on a table
// entry no server serves.
func TestEveryMethodIsInTheTable(t *testing.T) {
	srv, err := grpcserver.New(grpcserver.Config{Addr: "127.0.0.1:0", Reflection: true}, nil, telemetry.Nop("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	registerAll(srv.GRPC())
	served := map[string]bool{}
	for name, info := range srv.GRPC().GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + name + "/" + m.Name
			served[full] = true
			r, ok := Table[full]
			switch {
			case !ok:
				t.Errorf("%s is served but not in the authorization table (it would be refused)", full)
			case !r.Public && !r.AnyCaller && len(r.Roles) == 0 && len(r.Services) == 0:
				t.Errorf("%s: a rule that allows nobody", full)
			}
		}
	}
	if len(served) < 25 {
		t.Fatalf("walked only %d methods: the services are not registered", len(served))
	}
	// reflection v1alpha is registered too by reflection.Register.
	for m := range Table {
		if !served[m] {
			t.Errorf("the table names %s, which no Herald server serves", m)
		}
	}
}

func TestTableIsDocumented(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "authorization.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- authz-table:begin (generated: go test ./platform/authz -run TestTableIsDocumented -update) -->\n", "<!-- authz-table:end -->"
	i, j := strings.Index(string(doc), begin), strings.Index(string(doc), end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the table markers %q ... %q", path, begin, end)
	}
	want := Markdown(Table)
	got := string(doc[i+len(begin) : j])
	if got == want {
		return
	}
	if *update {
		out := string(doc[:i+len(begin)]) + want + string(doc[j:])
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's table differs from authz.Table; run go test ./platform/authz -run TestTableIsDocumented -update", path)
}

func person(id string, roles map[string][]identity.Role) *identity.Person {
	return &identity.Person{Issuer: "https://idp.test", Subject: id, PersonID: id, Roles: roles}
}

func TestAuthorizeDecidesPerMethodAndTrust(t *testing.T) {
	clinA := person("dr-a", map[string][]identity.Role{"RXA": {identity.RoleClinician}})
	policyA := person("pa-a", map[string][]identity.Role{"RXA": {identity.RolePolicyAdmin}})
	fsoA := person("fso-a", map[string][]identity.Role{"RXA": {identity.RoleFailsafeOfficer}})
	sender := &fakeBinder{"spiffe://herald.dev/ns/herald/sa/lab-a": person("lab-a", map[string][]identity.Role{"RXA": {identity.RoleIntegrationSender}})}
	a := New(Table, sender, nil)
	notification := identity.Caller{Service: "spiffe://herald.dev/ns/herald/sa/notification"}
	cases := []struct {
		name   string
		caller *identity.Caller
		method string
		req    any
		code   codes.Code
	}{
		{"no caller", nil, ackv1.AcknowledgementService_ListAlerts_FullMethodName, &ackv1.ListAlertsRequest{}, codes.Unauthenticated},
		{"health needs no caller", nil, healthpb.Health_Check_FullMethodName, &healthpb.HealthCheckRequest{}, codes.OK},
		{"a method not in the table", &identity.Caller{Person: fsoA}, "/herald.secret.v1.Backdoor/Open", nil, codes.PermissionDenied},
		{"clinician lists alerts", &identity.Caller{Person: clinA}, ackv1.AcknowledgementService_ListAlerts_FullMethodName, &ackv1.ListAlertsRequest{}, codes.OK},
		{"clinician acknowledges (the handler checks the alert)", &identity.Caller{Person: clinA}, ackv1.AcknowledgementService_Acknowledge_FullMethodName, &ackv1.AcknowledgeRequest{}, codes.OK},
		{"clinician may not close", &identity.Caller{Person: clinA}, ackv1.AcknowledgementService_Close_FullMethodName, &ackv1.CloseRequest{}, codes.PermissionDenied},
		{"fail-safe officer closes (the handler checks the trust)", &identity.Caller{Person: fsoA}, ackv1.AcknowledgementService_Close_FullMethodName, &ackv1.CloseRequest{}, codes.OK},
		{"clinician may not load a bundle", &identity.Caller{Person: clinA}, rulesv1.RulesService_LoadBundle_FullMethodName, &rulesv1.LoadBundleRequest{}, codes.PermissionDenied},
		{"policy admin of the trust reads its bundle", &identity.Caller{Person: policyA}, rulesv1.RulesService_GetActiveBundle_FullMethodName, &rulesv1.GetActiveBundleRequest{Tenant: "RXA"}, codes.OK},
		{"policy admin of another trust may not", &identity.Caller{Person: policyA}, rulesv1.RulesService_GetActiveBundle_FullMethodName, &rulesv1.GetActiveBundleRequest{Tenant: "RXB"}, codes.PermissionDenied},
		{"a request naming no trust", &identity.Caller{Person: policyA}, rulesv1.RulesService_GetActiveBundle_FullMethodName, &rulesv1.GetActiveBundleRequest{}, codes.InvalidArgument},
		{"notification resolves targets on its own account, any trust", &notification, rulesv1.RulesService_ResolveTargets_FullMethodName, &rulesv1.ResolveTargetsRequest{Tenant: "RXB"}, codes.OK},
		{"notification may not load a bundle", &notification, rulesv1.RulesService_LoadBundle_FullMethodName, &rulesv1.LoadBundleRequest{}, codes.PermissionDenied},
		{"notification may not acknowledge", &notification, ackv1.AcknowledgementService_Acknowledge_FullMethodName, &ackv1.AcknowledgeRequest{}, codes.PermissionDenied},
		{"an unbound service identity", &identity.Caller{Service: "spiffe://herald.dev/ns/herald/sa/stranger"}, ackv1.AcknowledgementService_ListAlerts_FullMethodName, &ackv1.ListAlertsRequest{}, codes.PermissionDenied},
		{"a bound sender raises for its trust", &identity.Caller{Service: "spiffe://herald.dev/ns/herald/sa/lab-a"}, intakev1.IntakeService_RaiseAlert_FullMethodName,
			&intakev1.RaiseAlertRequest{Report: &intakev1.Report{Tenant: "RXA"}}, codes.OK},
		{"a bound sender may not raise for another trust", &identity.Caller{Service: "spiffe://herald.dev/ns/herald/sa/lab-a"}, intakev1.IntakeService_RaiseAlert_FullMethodName,
			&intakev1.RaiseAlertRequest{Report: &intakev1.Report{Tenant: "RXB"}}, codes.PermissionDenied},
		{"a bound sender may not cancel for another trust", &identity.Caller{Service: "spiffe://herald.dev/ns/herald/sa/lab-a"}, intakev1.IntakeService_CancelAlert_FullMethodName,
			&intakev1.CancelAlertRequest{Tenant: "RXB"}, codes.PermissionDenied},
		{"a bound sender may not read alerts", &identity.Caller{Service: "spiffe://herald.dev/ns/herald/sa/lab-a"}, ackv1.AcknowledgementService_ListAlerts_FullMethodName, &ackv1.ListAlertsRequest{}, codes.PermissionDenied},
		{"a person with no roles", &identity.Caller{Person: person("nobody", nil)}, ackv1.AcknowledgementService_GetAlert_FullMethodName, &ackv1.GetAlertRequest{}, codes.PermissionDenied},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			if c.caller != nil {
				ctx = identity.NewContext(ctx, *c.caller)
			}
			out, err := a.Authorize(ctx, c.method, c.req)
			if got := status.Code(err); got != c.code {
				t.Fatalf("code %v (%v), want %v", got, err, c.code)
			}
			if err == nil && c.caller != nil {
				got, ok := identity.FromContext(out)
				if !ok || got.Service != c.caller.Service {
					t.Fatalf("the handler's context lost the caller: %+v", got)
				}
				if c.caller.Service == "spiffe://herald.dev/ns/herald/sa/lab-a" && (got.Person == nil || got.Person.PersonID != "lab-a") {
					t.Fatalf("a bound service identity calls as its person: %+v", got.Person)
				}
			}
		})
	}
}

type fakeBinder map[string]*identity.Person

func (f fakeBinder) Service(id string) (*identity.Person, bool) { p, ok := f[id]; return p, ok }

// testAuthn stands in for authentication: it puts the person the
// "x-test-person" metadata names into the context (tests only).
func testAuthn(people map[string]*identity.Person) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	caller := func(ctx context.Context) context.Context {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get("x-test-person"); len(v) == 1 {
			return identity.NewContext(ctx, identity.Caller{Person: people[v[0]]})
		}
		return ctx
	}
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(caller(ctx), req)
		}, func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, grpcserver.StreamWithContext(caller(ss.Context()), ss))
		}
}

type ackStub struct {
	ackv1.UnimplementedAcknowledgementServiceServer
}

func (ackStub) ListAlerts(ctx context.Context, _ *ackv1.ListAlertsRequest) (*ackv1.ListAlertsResponse, error) {
	c, _ := identity.FromContext(ctx)
	return &ackv1.ListAlertsResponse{NextPageToken: c.Person.PersonID}, nil
}

func (ackStub) WatchAlerts(_ *ackv1.WatchAlertsRequest, s grpc.ServerStreamingServer[ackv1.WatchAlertsResponse]) error {
	c, _ := identity.FromContext(s.Context())
	return s.Send(&ackv1.WatchAlertsResponse{State: &ackv1.AlertState{AlertId: c.Person.PersonID}})
}

// TestInterceptorsGuardUnaryAndStreamCalls runs a real gRPC server with
// the interceptors installed after (stand-in) authentication, as the
// composition roots do.
func TestInterceptorsGuardUnaryAndStreamCalls(t *testing.T) {
	people := map[string]*identity.Person{
		"clin": person("dr-a", map[string][]identity.Role{"RXA": {identity.RoleClinician}}),
		"pa":   person("pa-a", map[string][]identity.Role{"RXA": {identity.RolePolicyAdmin}}),
	}
	u, s := testAuthn(people)
	srv, err := grpcserver.New(grpcserver.Config{Addr: "127.0.0.1:0"}, nil, telemetry.Nop("test"),
		grpcserver.WithInterceptors([]grpc.UnaryServerInterceptor{u}, []grpc.StreamServerInterceptor{s}),
		New(Table, nil, nil).ServerOption())
	if err != nil {
		t.Fatal(err)
	}
	ackv1.RegisterAcknowledgementServiceServer(srv.GRPC(), ackStub{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = srv.Serve(ctx) }()
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := ackv1.NewAcknowledgementServiceClient(conn)
	as := func(who string) context.Context { return metadata.AppendToOutgoingContext(ctx, "x-test-person", who) }

	if _, err := c.ListAlerts(ctx, &ackv1.ListAlertsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no caller: %v, want Unauthenticated", err)
	}
	if r, err := c.ListAlerts(as("clin"), &ackv1.ListAlertsRequest{}); err != nil || r.GetNextPageToken() != "dr-a" {
		t.Errorf("clinician: %v, %v (the handler must see the caller)", r, err)
	}
	if _, err := c.ListAlerts(as("pa"), &ackv1.ListAlertsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("policy admin: %v, want PermissionDenied", err)
	}
	recv := func(ctx context.Context) (*ackv1.WatchAlertsResponse, error) {
		st, err := c.WatchAlerts(ctx, &ackv1.WatchAlertsRequest{})
		if err != nil {
			return nil, err
		}
		return st.Recv()
	}
	if _, err := recv(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("stream, no caller: %v, want Unauthenticated", err)
	}
	if _, err := recv(as("pa")); status.Code(err) != codes.PermissionDenied {
		t.Errorf("stream, policy admin: %v, want PermissionDenied", err)
	}
	if r, err := recv(as("clin")); err != nil || r.GetState().GetAlertId() != "dr-a" {
		t.Errorf("stream, clinician: %v, %v", r, err)
	}
}

// BenchmarkAuthorize is the authorization check of one call (the table
// lookup, the role and trust decision, the context): docs/authorization.md
// reports its median and p99 (TestAuthorizeLatency).
func BenchmarkAuthorize(b *testing.B) {
	a := New(Table, nil, nil)
	p := person("pa-a", map[string][]identity.Role{"RXA": {identity.RolePolicyAdmin, identity.RoleOperator}, "RXB": {identity.RoleClinician}})
	ctx := identity.NewContext(context.Background(), identity.Caller{Person: p, Service: "spiffe://herald.dev/ns/herald/sa/console"})
	req := &rulesv1.GetActiveBundleRequest{Tenant: "RXA"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authorize(ctx, rulesv1.RulesService_GetActiveBundle_FullMethodName, req); err != nil {
			b.Fatal(err)
		}
	}
}

var latency = flag.Bool("authz.latency", false, "measure the per-call authorization latency distribution")

// TestAuthorizeLatency prints the median and p99 of one authorization
// check over 100,000 calls (with -authz.latency; figures, not a verdict).
func TestAuthorizeLatency(t *testing.T) {
	if !*latency {
		t.Skip("figures only: go test ./platform/authz -run TestAuthorizeLatency -authz.latency -v")
	}
	a := New(Table, nil, nil)
	p := person("pa-a", map[string][]identity.Role{"RXA": {identity.RolePolicyAdmin, identity.RoleOperator}, "RXB": {identity.RoleClinician}})
	ctx := identity.NewContext(context.Background(), identity.Caller{Person: p})
	req := &rulesv1.GetActiveBundleRequest{Tenant: "RXA"}
	const n = 100_000
	d := make([]time.Duration, n)
	for i := range d {
		start := time.Now()
		if _, err := a.Authorize(ctx, rulesv1.RulesService_GetActiveBundle_FullMethodName, req); err != nil {
			t.Fatal(err)
		}
		d[i] = time.Since(start)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	t.Logf("authorization check per call over %d calls: median %v, p99 %v, max %v", n, d[n/2], d[n*99/100], d[n-1])
}
