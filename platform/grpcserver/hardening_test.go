package grpcserver

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
)

// serve starts a server of cfg with the test service and returns a client.
func serve(t *testing.T, cfg Config, h func() error) *grpc.ClientConn {
	t.Helper()
	tel := telemetry.Nop("test")
	s, err := New(cfg, logging.Discard(), tel)
	if err != nil {
		t.Fatal(err)
	}
	s.GRPC().RegisterService(testService(h), struct{}{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	conn, err := Dial(ctx, s.Addr(), tel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); cancel(); <-done })
	return conn
}

// An unexpected error reaches the caller as Internal with a fixed text:
// the Redis or Kafka address inside it stays in the service's log.
func TestInternalErrorsHideTheirDetails(t *testing.T) {
	conn := start(t, func() error { return errors.New("dial tcp 10.1.2.3:6379: connect: connection refused") })
	err := call(conn)
	if status.Code(err) != codes.Internal {
		t.Fatalf("code: got %v, want Internal", err)
	}
	if strings.Contains(err.Error(), "10.1.2.3") || strings.Contains(err.Error(), "6379") {
		t.Fatalf("the Internal status echoes the address: %v", err)
	}
}

// Reflection (the API map) is served only when the service asks for it:
// services do so in the development profile alone.
func TestReflectionOnlyWhenAskedFor(t *testing.T) {
	for _, on := range []bool{false, true} {
		conn := serve(t, Config{Addr: "127.0.0.1:0", Reflection: on}, func() error { return nil })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err == nil {
			// A Send that finds the stream already ended says io.EOF; the
			// status is the Recv's.
			if err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err == nil || errors.Is(err, io.EOF) {
				_, err = stream.Recv()
			}
		}
		cancel()
		if on && err != nil {
			t.Fatalf("reflection asked for but not served: %v", err)
		}
		if !on && status.Code(err) != codes.Unimplemented {
			t.Fatalf("reflection served without being asked for (err %v)", err)
		}
	}
}

// A request over the service's receive limit is refused before its
// handler runs.
func TestReceiveLimit(t *testing.T) {
	ran := 0
	conn := serve(t, Config{Addr: "127.0.0.1:0", MaxRecvBytes: 1024}, func() error { ran++; return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	big := wrapperspb.String(strings.Repeat("x", 4096))
	err := conn.Invoke(ctx, "/test.Probe/Call", big, big)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 4 KiB request to a 1 KiB limit: got %v, want ResourceExhausted", err)
	}
	if ran != 0 {
		t.Fatal("the handler ran on an oversized request")
	}
}

// The plaintext health listener (for the kubelet's probes) answers health
// checks and nothing else, while the API stays mutual TLS.
func TestHealthListenerServesHealthAlone(t *testing.T) {
	dir := t.TempDir()
	ids, err := devca.WriteDir(dir, time.Now(), time.Hour, "rules")
	if err != nil {
		t.Fatal(err)
	}
	src := mustLoad(t, ids["rules"], nil)
	s, err := New(Config{Addr: "127.0.0.1:0", HealthAddr: "127.0.0.1:0"}, logging.Discard(), telemetry.Nop("test"), WithTLS(src))
	if err != nil {
		t.Fatal(err)
	}
	s.GRPC().RegisterService(testService(func() error { return nil }), struct{}{})
	s.SetServing("test.Probe")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()

	conn, err := grpc.NewClient(s.HealthAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("plaintext health check: %v %v", resp, err)
	}
	if err := call(conn); status.Code(err) != codes.Unimplemented {
		t.Fatalf("the API on the health listener: got %v, want Unimplemented", err)
	}
	plain, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := call(plain); err == nil {
		t.Fatal("the API answered a plaintext call")
	}
	cancel()
	<-done
	stopped = true
	if l, err := net.Listen("tcp", s.HealthAddr()); err != nil {
		t.Fatalf("health port still bound after stop: %v", err)
	} else {
		l.Close()
	}
}

// A connection runs at most MaxConcurrentStreams calls at once; the
// others wait for a slot instead of piling onto the service.
func TestMaxConcurrentStreams(t *testing.T) {
	var (
		mu       sync.Mutex
		inflight int
		most     int
	)
	release := make(chan struct{})
	conn := serve(t, Config{Addr: "127.0.0.1:0", MaxConcurrentStreams: 1}, func() error {
		mu.Lock()
		inflight++
		most = max(most, inflight)
		mu.Unlock()
		<-release
		mu.Lock()
		inflight--
		mu.Unlock()
		return nil
	})
	const calls = 3
	errs := make(chan error, calls)
	for range calls {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			errs <- conn.Invoke(ctx, "/test.Probe/Call", &emptypb.Empty{}, &emptypb.Empty{})
		}()
	}
	for i := range calls {
		// Wait until a call holds the one slot, then let it finish.
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			n := inflight
			mu.Unlock()
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("call %d never reached the handler", i+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Give a server without the limit the chance to run the others.
		time.Sleep(100 * time.Millisecond)
		release <- struct{}{}
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if most != 1 {
		t.Fatalf("%d calls ran at once on one connection, want at most 1", most)
	}
}
