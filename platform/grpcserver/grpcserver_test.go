package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
)

// testService answers /test.Probe/Call with whatever error (or panic) the
// test set.
func testService(h func() error) *grpc.ServiceDesc {
	return testServiceCtx(func(context.Context) error { return h() })
}

// testServiceCtx is testService with the call's context.
func testServiceCtx(h func(ctx context.Context) error) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Probe",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Call",
			Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(emptypb.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				call := func(ctx context.Context, _ any) (any, error) { return &emptypb.Empty{}, h(ctx) }
				return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/test.Probe/Call"}, call)
			},
		}},
	}
}

func start(t *testing.T, h func() error) *grpc.ClientConn {
	t.Helper()
	return startWith(t, testService(h))
}

// startWith serves desc in plaintext and returns a client connection.
func startWith(t *testing.T, desc *grpc.ServiceDesc, options ...Option) *grpc.ClientConn {
	t.Helper()
	tel := telemetry.Nop("test")
	s, err := New(Config{Addr: "127.0.0.1:0"}, logging.Discard(), tel, options...)
	if err != nil {
		t.Fatal(err)
	}
	s.GRPC().RegisterService(desc, struct{}{})
	s.SetServing("test.Probe")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	conn, err := Dial(ctx, s.Addr(), tel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve after stop: got %v, want nil", err)
		}
	})
	return conn
}

func call(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return conn.Invoke(ctx, "/test.Probe/Call", &emptypb.Empty{}, &emptypb.Empty{})
}

func TestHealthReportsServing(t *testing.T) {
	conn := start(t, func() error { return nil })
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "test.Probe"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: got %v, want SERVING", resp.Status)
	}
}

func TestFaultKindsMapToCodes(t *testing.T) {
	cases := []struct {
		err  error
		want codes.Code
	}{
		{fault.Invalid("raise alert", fault.Violation{Field: "report.tenant", Problem: "must be an ODS code"}), codes.InvalidArgument},
		{fmt.Errorf("ack: %w", fault.Precondition("alert is CANCELLED")), codes.FailedPrecondition},
		{fault.NotFound("alert a1"), codes.NotFound},
		{fault.Unavailable("kafka down"), codes.Unavailable},
		{fault.PermissionDenied("not a fail-safe officer"), codes.PermissionDenied},
		{fault.Unauthenticated("no identity"), codes.Unauthenticated},
		{fault.AlreadyExists("x"), codes.AlreadyExists},
		{errors.New("boom"), codes.Internal},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
	}
	for _, c := range cases {
		t.Run(c.want.String(), func(t *testing.T) {
			conn := start(t, func() error { return c.err })
			err := call(conn)
			if got := status.Code(err); got != c.want {
				t.Fatalf("code: got %v (%v), want %v", got, err, c.want)
			}
		})
	}
}

func TestInvalidArgumentCarriesFieldViolations(t *testing.T) {
	conn := start(t, func() error {
		return fault.Invalid("raise alert", fault.Violation{Field: "report.patient.nhs_number", Problem: "fails the modulus 11 check"})
	})
	st := status.Convert(call(conn))
	var got []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			got = append(got, br.FieldViolations...)
		}
	}
	if len(got) != 1 || got[0].Field != "report.patient.nhs_number" {
		t.Fatalf("field violations: got %v, want one for report.patient.nhs_number", got)
	}
}

func TestPanicBecomesInternalAndServerLives(t *testing.T) {
	n := 0
	conn := start(t, func() error {
		n++
		if n == 1 {
			panic("handler bug")
		}
		return nil
	})
	if got := status.Code(call(conn)); got != codes.Internal {
		t.Fatalf("after panic: got %v, want Internal", got)
	}
	if err := call(conn); err != nil {
		t.Fatalf("call after a panic: got %v, want the server still serving", err)
	}
}

func TestConfigValidateNamesSetting(t *testing.T) {
	err := Config{Addr: ":1", TLSCertFile: "c.pem"}.Validate()
	if err == nil {
		t.Fatal("cert without key accepted")
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("empty address accepted")
	}
}

func TestCloseReleasesAListenerNeverServed(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"}, logging.Discard(), telemetry.Nop("test"))
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("after Close, %s is still bound: %v", addr, err)
	}
	_ = l.Close()
	if err := s.Serve(context.Background()); err != nil {
		t.Fatalf("Serve after Close: got %v, want nil at once", err)
	}
}

func TestInterceptorsRunInOrderBeforeTheHandler(t *testing.T) {
	var order []string
	mark := func(name string, refuse bool) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			order = append(order, name)
			if refuse {
				return nil, status.Error(codes.PermissionDenied, name+" refused")
			}
			return next(ctx, req)
		}
	}
	handled := false
	desc := testService(func() error { handled = true; return nil })

	conn := startWith(t, desc,
		WithInterceptors([]grpc.UnaryServerInterceptor{mark("authn", false)}, nil),
		WithInterceptors([]grpc.UnaryServerInterceptor{mark("authz", false)}, nil))
	if err := call(conn); err != nil {
		t.Fatal(err)
	}
	if !handled || fmt.Sprint(order) != "[authn authz]" {
		t.Fatalf("order %v, handled %v; want [authn authz] and handled", order, handled)
	}

	order, handled = nil, false
	conn = startWith(t, desc, WithInterceptors([]grpc.UnaryServerInterceptor{mark("authn", true), mark("authz", false)}, nil))
	if err := call(conn); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("refused call: got %v, want PermissionDenied", err)
	}
	if handled || fmt.Sprint(order) != "[authn]" {
		t.Fatalf("a refusal stops the chain: order %v, handled %v", order, handled)
	}
}
