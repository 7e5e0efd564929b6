package servicemain

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/freeport"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
)

// recorder notes the order in which resources are released.
type recorder struct {
	mu    sync.Mutex
	order []string
}

func (r *recorder) release(name string, err error) func(context.Context) error {
	return func(context.Context) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.order = append(r.order, name)
		return err
	}
}

func (r *recorder) released() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

func TestStopReleasesInReverseOrderOnce(t *testing.T) {
	var rec recorder
	life := NewLifecycle(nil)
	life.OnStop("kafka writer", rec.release("kafka writer", nil))
	life.OnStop("redis", rec.release("redis", errors.New("connection reset")))
	life.OnStop("grpc server", rec.release("grpc server", nil))

	err := life.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "release redis: connection reset") {
		t.Fatalf("Stop: got %v, want the redis release error named", err)
	}
	if got, want := rec.released(), []string{"grpc server", "redis", "kafka writer"}; !slices.Equal(got, want) {
		t.Fatalf("release order: got %v, want %v (reverse of acquisition; a failed release does not stop the rest)", got, want)
	}
	if again := life.Stop(context.Background()); again == nil || again.Error() != err.Error() {
		t.Fatalf("second Stop: got %v, want the first result %v", again, err)
	}
	if got := rec.released(); len(got) != 3 {
		t.Fatalf("second Stop released again: %v", got)
	}
}

func TestFirstFailingTaskStopsTheOthersAndIsNamed(t *testing.T) {
	var rec recorder
	life := NewLifecycle(logging.Discard())
	life.OnStop("listener", rec.release("listener", nil))
	stopped := make(chan struct{})
	life.Go("consumer", func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return ctx.Err()
	})
	life.Go("grpc server", func(context.Context) error { return errors.New("listener closed unexpectedly") })

	err := life.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "task grpc server: listener closed unexpectedly") {
		t.Fatalf("Run: got %v, want the failing task named with its error", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the other task was not stopped before Run returned")
	}
	if got := rec.released(); !slices.Equal(got, []string{"listener"}) {
		t.Fatalf("released: got %v, want the listener released after the tasks", got)
	}
}

func TestTaskThatEndsQuietlyIsAFailure(t *testing.T) {
	life := NewLifecycle(nil)
	life.Go("bundle watcher", func(context.Context) error { return nil })
	life.Go("consumer", func(ctx context.Context) error { <-ctx.Done(); return nil })
	err := life.Run(context.Background())
	if !errors.Is(err, ErrTaskEnded) || !strings.Contains(err.Error(), "bundle watcher") {
		t.Fatalf("Run: got %v, want ErrTaskEnded naming the bundle watcher", err)
	}
}

func TestRequestedStopReturnsNil(t *testing.T) {
	var rec recorder
	life := NewLifecycle(nil)
	life.OnStop("redis", rec.release("redis", nil))
	life.Go("grpc server", func(ctx context.Context) error { <-ctx.Done(); return nil })
	life.Go("consumer", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- life.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after a requested stop: got %v, want nil", err)
	}
	if got := rec.released(); !slices.Equal(got, []string{"redis"}) {
		t.Fatalf("released: got %v, want [redis]", got)
	}
	if err := life.Run(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Run after Stop: got %v, want ErrStopped", err)
	}
}

func TestOnStopAfterStopReleasesAtOnce(t *testing.T) {
	var rec recorder
	life := NewLifecycle(nil)
	if err := life.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	life.OnStop("late client", rec.release("late client", nil))
	if got := rec.released(); !slices.Equal(got, []string{"late client"}) {
		t.Fatalf("released: got %v, want the late resource released at once", got)
	}
}

func TestStopWaitsForAConcurrentStop(t *testing.T) {
	life := NewLifecycle(nil)
	entered, release := make(chan struct{}), make(chan struct{})
	life.OnStop("slow", func(context.Context) error { close(entered); <-release; return nil })
	first := make(chan error, 1)
	go func() { first <- life.Stop(context.Background()) }()
	<-entered
	second := make(chan error, 1)
	go func() { second <- life.Stop(context.Background()) }()
	select {
	case err := <-second:
		t.Fatalf("second Stop returned %v while the first was still releasing", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if err := errors.Join(<-first, <-second); err != nil {
		t.Fatal(err)
	}
}

// fakeService is a composition root in miniature: it binds a gRPC server
// and an HTTP-style listener, then fails at a later step.
type fakeService struct {
	life *Lifecycle
	grpc *grpcserver.Server
	http net.Listener
}

func newFakeService(grpcAddr, httpAddr string, fail error) (s *fakeService, err error) {
	s = &fakeService{life: NewLifecycle(nil)}
	defer s.life.Rollback(&err)
	if s.grpc, err = grpcserver.New(grpcserver.Config{Addr: grpcAddr}, logging.Discard(), telemetry.Nop("fake")); err != nil {
		return nil, err
	}
	s.life.OnStop("grpc server", s.grpc.Close)
	s.life.Go("grpc server", s.grpc.Serve)
	if s.http, err = net.Listen("tcp", httpAddr); err != nil {
		return nil, err
	}
	s.life.OnClose("http listener", s.http.Close)
	if fail != nil {
		return nil, fail // e.g. the tenants file does not parse
	}
	return s, nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestFailedNewReleasesItsListeners(t *testing.T) {
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	if _, err := newFakeService(grpcAddr, httpAddr, errors.New("tenants file does not parse")); err == nil {
		t.Fatal("New succeeded, want its error")
	}
	for _, addr := range []string{grpcAddr, httpAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("after a failed New, %s is still bound: %v", addr, err)
		}
		_ = l.Close()
	}

	// The same addresses serve a service that starts, and are free again
	// once it stops.
	s, err := newFakeService(grpcAddr, httpAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.life.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, addr := range []string{grpcAddr, httpAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("after Run returned, %s is still bound: %v", addr, err)
		}
		_ = l.Close()
	}
}
