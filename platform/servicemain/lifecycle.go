package servicemain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/herald-health/herald/platform/logging"
)

// Lifecycle is what a service's composition root acquires and runs: every
// resource registers its release (OnStop) the moment it is acquired, and
// every long-running part of the service is a named task (Go). A service's
// New reads as config, acquire-and-register, tasks:
//
//	func New(ctx context.Context, cfg Config, deps Deps) (s *Service, err error) {
//		s = &Service{life: servicemain.NewLifecycle(deps.Logger)}
//		defer s.life.Rollback(&err) // a failed New releases what it acquired
//		srv, err := grpcserver.New(cfg.GRPC, deps.Logger, deps.Telemetry)
//		if err != nil {
//			return nil, err
//		}
//		s.life.OnStop("grpc server", srv.Close)
//		s.life.Go("grpc server", srv.Serve)
//		...
//	}
//	func (s *Service) Run(ctx context.Context) error { return s.life.Run(ctx) }
//
// Run starts the tasks and returns when the first of them returns: its
// error (or, for a task that returned nil while the service was still
// meant to run, ErrTaskEnded) names the task and stops the others. Stop
// then releases the resources in reverse order of acquisition, once: it is
// idempotent and safe to call from Run, a rollback, a test and a signal
// handler alike. (Alertmanager's app/lifecycle.go onStop pattern.)
type Lifecycle struct {
	log   *slog.Logger
	grace time.Duration

	mu      sync.Mutex
	stops   []stopper
	tasks   []task
	running bool
	stopped bool
	done    chan struct{} // closed when Stop has run every release
	stopErr error
}

// ErrTaskEnded is returned (wrapped, with the task's name) by Run when a
// task returned nil before the service was asked to stop: a task that
// quietly ends would otherwise leave the service up but deaf.
var ErrTaskEnded = errors.New("task ended before the service was stopped")

// ErrStopped is returned by Run on a lifecycle already stopped.
var ErrStopped = errors.New("service already stopped")

// DefaultStopGrace bounds how long Stop gives all the releases together
// when its context has no deadline of its own.
const DefaultStopGrace = 30 * time.Second

type stopper struct {
	name string
	fn   func(context.Context) error
}

type task struct {
	name string
	fn   func(context.Context) error
}

// NewLifecycle returns an empty lifecycle that logs to logger (nil: discard).
func NewLifecycle(logger *slog.Logger) *Lifecycle {
	if logger == nil {
		logger = logging.Discard()
	}
	return &Lifecycle{log: logger, grace: DefaultStopGrace, done: make(chan struct{})}
}

// OnStop registers fn to release a resource just acquired; Stop calls the
// registered functions in reverse order of registration, each at most
// once. fn should honour ctx's deadline (a graceful stop that runs out of
// time must cut what is left). Registering after Stop has begun calls fn
// at once, so a resource acquired during a stop is not leaked.
func (l *Lifecycle) OnStop(name string, fn func(ctx context.Context) error) {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), l.grace)
		defer cancel()
		if err := fn(ctx); err != nil {
			l.log.Warn("release after stop", "resource", name, "error", err.Error())
		}
		return
	}
	l.stops = append(l.stops, stopper{name: name, fn: fn})
	l.mu.Unlock()
}

// OnClose is OnStop for a release that takes no context (most Close
// methods).
func (l *Lifecycle) OnClose(name string, fn func() error) {
	l.OnStop(name, func(context.Context) error { return fn() })
}

// Go registers a named task that Run starts. fn must return when its
// context is done; a nil return before that counts as a failure
// (ErrTaskEnded). Tasks registered after Run has started are refused with
// a panic, since nothing would start them: register every task in New.
func (l *Lifecycle) Go(name string, fn func(ctx context.Context) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running || l.stopped {
		panic(fmt.Sprintf("servicemain: task %q registered after Run started", name))
	}
	l.tasks = append(l.tasks, task{name: name, fn: fn})
}

// Run runs every task until ctx is done or the first task returns, stops
// the others, waits for them, and then calls Stop. It returns nil after a
// requested stop (ctx done, every task returning nil or ctx's error) and
// otherwise the first task's error, prefixed with its name ("task grpc
// server: ..."), joined with any release error. Run may be called once.
func (l *Lifecycle) Run(ctx context.Context) error {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return ErrStopped
	}
	if l.running {
		l.mu.Unlock()
		return errors.New("servicemain: Run called twice")
	}
	l.running = true
	tasks := append([]task(nil), l.tasks...)
	l.mu.Unlock()

	if len(tasks) == 0 {
		<-ctx.Done()
	}
	runCtx, cancel := context.WithCancel(ctx)
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(tasks))
	for _, t := range tasks {
		go func() {
			results <- result{name: t.name, err: t.fn(runCtx)}
		}()
	}
	var first error
	for i := range tasks {
		r := <-results
		if i == 0 {
			// The first task to return decides, and every other task is
			// stopped now.
			first = firstVerdict(ctx, r.name, r.err)
			cancel()
			continue
		}
		if r.err != nil && !errors.Is(r.err, context.Canceled) && !errors.Is(r.err, context.DeadlineExceeded) {
			l.log.Warn("task stopped with an error", "task", r.name, "error", r.err.Error())
		}
	}
	cancel()
	stopCtx, stopCancel := context.WithTimeout(context.WithoutCancel(ctx), l.grace)
	defer stopCancel()
	return errors.Join(first, l.Stop(stopCtx))
}

// firstVerdict turns the return of the first task to end into Run's
// verdict: nil after a requested stop (parent done), the named error
// otherwise.
func firstVerdict(parent context.Context, name string, err error) error {
	switch {
	case parent.Err() != nil && (err == nil || errors.Is(err, parent.Err())):
		return nil
	case err == nil:
		return fmt.Errorf("task %s: %w", name, ErrTaskEnded)
	default:
		return fmt.Errorf("task %s: %w", name, err)
	}
}

// Stop releases every registered resource in reverse order of
// registration and returns their errors joined, each prefixed with the
// resource's name. It runs the releases once: a second call (or a call
// while the first is under way) waits for the first and returns the same
// result. A release that fails does not stop the others. Call it only
// after the tasks have returned (Run does) or when they were never
// started (a failed New, see Rollback).
func (l *Lifecycle) Stop(ctx context.Context) error {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		return l.stopErr
	}
	l.stopped = true
	stops := l.stops
	l.stops = nil
	l.mu.Unlock()

	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.grace)
		defer cancel()
	}
	var errs []error
	for i := len(stops) - 1; i >= 0; i-- {
		if err := stops[i].fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", stops[i].name, err))
		}
	}
	l.stopErr = errors.Join(errs...)
	close(l.done)
	return l.stopErr
}

// Rollback is deferred by a constructor right after the lifecycle is made,
// with the constructor's named error result: when the constructor fails,
// everything it had acquired is released (its listeners closed, its
// clients disconnected) before the error is returned. Release errors are
// logged, not returned: the constructor's error is the one that matters.
func (l *Lifecycle) Rollback(errp *error) {
	if errp == nil || *errp == nil {
		return
	}
	if err := l.Stop(context.Background()); err != nil {
		l.log.Warn("roll back a failed start", "error", err.Error())
	}
}
