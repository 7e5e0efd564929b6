// Package app is the acknowledgement service's application layer: it applies
// the alert event log to the lifecycle projection, fires SLA timers, decides
// commands and answers queries, through small interfaces it owns (the
// adapters implement them with Kafka and Redis).
//
// Order of work for one event (at least once, idempotent):
//
//  1. read the alert's state from the projection store (any replica's view);
//  2. fold the event (skipped if its id or offset was already applied);
//  3. publish the new state to the compacted state topic (durable first, so
//     the topic is never behind the store it restores);
//  4. store it in the projection (only if newer), then arm/cancel the
//     alert's timer as the stored state needs;
//  5. append the reactions the lifecycle owes (decline → escalate), with
//     deterministic ids;
//  6. return: the consumer commits.
//
// A crash at any point redelivers the event: steps 3-5 are repeated from the
// stored state, each idempotent. In particular a redelivered event that the
// store already reflects (lifecycle.Apply skips it) still publishes the
// stored state and arms the timer that state needs: the handler may have
// died between the store and the arm, and nothing else would arm it.
package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/timers"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ErrProjectionLost means the projection store lost its data (its epoch key
// is gone): nothing may be decided on it until Recover restored it. It wraps
// fault.ErrUnavailable, so the event consumer retries rather than
// dead-letters, and a gRPC caller gets Unavailable.
var ErrProjectionLost = errors.New("alert projection is being restored")

// ErrRetired means the alert was closed or cancelled longer ago than the
// store keeps terminal states (its state expired): the live store no longer
// holds it. Its history is in the console's reporting store and on the log.
var ErrRetired = errors.New("alert was closed and retired from the live store")

// StateStore is the projection mirrored in a shared store (Redis), keyed by
// alert id, with the log offset each state reflects. Every replica reads it.
//
// Get returns nil, nil for an unknown alert, and an error wrapping
// ErrRetired for one whose terminal state expired. Get and Put fail with an error
// wrapping ErrProjectionLost while the store's epoch is missing, checked
// atomically with the read or write. Put stores st only if its offset is
// newer than the stored one and reports whether it did; when it stores, it
// also fans the changed state out to watchers on every replica (best
// effort, in the same round trip). Errors other than ErrProjectionLost are
// outages (retry).
type StateStore interface {
	Get(ctx context.Context, alertID string) (*lifecycle.State, error)
	Put(ctx context.Context, st *lifecycle.State) (bool, error)
}

// RecoveryStore is what Recover needs from the projection store.
//
// Ready reports whether the epoch is present. TryLock takes the restore lock
// for ttl (false: another replica restores). Restore stores states without
// the epoch check, each only if newer. MarkReady recreates the epoch.
// ForEachOpen calls fn for every alert that is not closed or cancelled.
type RecoveryStore interface {
	Ready(ctx context.Context) (bool, error)
	TryLock(ctx context.Context, owner string, ttl time.Duration) (bool, error)
	Unlock(ctx context.Context, owner string) error
	Restore(ctx context.Context, states []*lifecycle.State) error
	MarkReady(ctx context.Context) error
	ForEachOpen(ctx context.Context, fn func(*lifecycle.State) error) error
}

// EventLog appends events durably (acks=all); an error means nothing is
// known to be durable and the caller may retry with the same events (their
// ids are deterministic).
type EventLog interface {
	Append(ctx context.Context, events ...*eventsv1.Event) error
}

// StateTopic publishes the latest state of an alert (the compacted topic)
// and reads the whole topic back for a rebuild.
type StateTopic interface {
	Publish(ctx context.Context, st *lifecycle.State) error
	ReadAll(ctx context.Context, fn func(*lifecycle.State) error) error
}

// TimerStore arms and cancels SLA timers (platform/timers.Store). Arming an
// existing id with a new due time or payload moves it.
type TimerStore interface {
	ArmMany(ctx context.Context, ts ...timers.Timer) error
	Cancel(ctx context.Context, id string) (bool, error)
}

// LogTail reads what the log holds for one alert beyond what the projection
// is known to have applied: it learns the consumer group's committed
// offset, then calls project (which reads the projection and returns the
// offset of the alert's last event it reflects, -1 for none), then returns
// the alert's events at or after the later of the two, up to the end of
// the log. Reading the committed offset before the projection leaves no
// hole: a record below it was stored before project read. An error of
// project is returned as it is; one wrapping fault.ErrUnavailable means the
// position could not be read, or the group is too far behind to read the
// gap (decide later).
type LogTail interface {
	Unapplied(ctx context.Context, alertID string, project func(context.Context) (after int64, err error)) ([]Logged, error)
}

// Logged is an event read from the log with its position.
type Logged struct {
	Event *eventsv1.Event
	Pos   lifecycle.Position
}

// Hooks are test and observation points; each may be nil.
type Hooks struct {
	// BeforeAppend runs in the timer handler after the decision and before
	// the append (a test cancels the service there to "kill" it).
	BeforeAppend func(ctx context.Context, t lifecycle.Timer, events []*eventsv1.Event)
	// AfterAppend runs after the timer's events were appended, before the
	// handler returns (before the timer is confirmed).
	AfterAppend func(ctx context.Context, t lifecycle.Timer, events []*eventsv1.Event)
	// BeforeArm runs before the alert timer st needs is armed or
	// cancelled; an error fails the arm as a Redis error would (a test
	// injects the fault between the store and the arm there).
	BeforeArm func(ctx context.Context, st *lifecycle.State) error
	// Received runs when the consumer starts handling an event.
	Received func(ev *eventsv1.Event)
	// Applied runs after an event was handled by the consumer.
	Applied func(st *lifecycle.State, ev *eventsv1.Event, applied bool)
}

// Deps are the App's collaborators. Clock, Logger and Telemetry default to
// the real clock, a discarding logger and no-op telemetry.
type Deps struct {
	States   StateStore
	Recovery RecoveryStore
	Log      EventLog
	Topic    StateTopic
	Timers   TimerStore
	Lister   Lister
	// Tail, when set, brings a state read from the projection up to the
	// log before a decision (timers, commands, the watchdog): see current.
	Tail   LogTail
	Clock  clock.Clock
	Logger *slog.Logger
	Tel    *telemetry.Telemetry
	Hooks  Hooks
	// Producer names this replica in the envelope of events it appends.
	Producer string
	// CommandWait bounds how long a command waits for the projection to
	// reflect its event before answering from its own fold (default 3 s).
	CommandWait time.Duration
	// Events and Views serve GetAlert's patient details (details.go).
	Events EventReader
	Views  ViewRecorder
}

// App is the acknowledgement application. It is safe for concurrent use.
type App struct {
	d       Deps
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	metrics metrics
	lost    chan struct{}
}

type metrics struct {
	escalations metric.Int64Counter
	breaches    metric.Int64Counter
	failsafe    metric.Int64Counter
	lateness    metric.Float64Histogram
	toAck       metric.Float64Histogram
	ahead       metric.Int64Counter
	repaired    metric.Int64Counter
}

// New returns an App.
func New(d Deps) *App {
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Tel == nil {
		d.Tel = telemetry.Nop("acknowledgement")
	}
	if d.CommandWait <= 0 {
		d.CommandWait = 3 * time.Second
	}
	if d.Producer == "" {
		d.Producer = "acknowledgement"
	}
	a := &App{d: d, tracer: d.Tel.Tracer(), prop: d.Tel.Propagator, lost: make(chan struct{}, 1)}
	if a.prop == nil {
		a.prop = telemetry.Propagator()
	}
	m := d.Tel.Meter()
	a.metrics.escalations, _ = m.Int64Counter("herald.ack.escalations", metric.WithDescription("AlertEscalated events appended by this service"))
	a.metrics.breaches, _ = m.Int64Counter("herald.ack.sla_breaches", metric.WithDescription("SLABreached events appended"))
	a.metrics.failsafe, _ = m.Int64Counter("herald.ack.failsafe_queued", metric.WithDescription("FailsafeQueued events appended"))
	a.metrics.lateness, _ = m.Float64Histogram("herald.ack.timer_lateness", metric.WithUnit("s"), metric.WithDescription("timer handler start minus due time"))
	a.metrics.ahead, _ = m.Int64Counter("herald.ack.decided_ahead_of_projection", metric.WithDescription("decisions (timer, command, watchdog) that read events of their alert from the log because the projection had not applied them yet"))
	a.metrics.repaired, _ = m.Int64Counter("herald.ack.timers_repaired", metric.WithDescription("lost SLA timers re-armed by the overdue watchdog (TimerRepaired events)"))
	a.metrics.toAck, _ = m.Float64Histogram("herald.ack.time_to_acknowledge", metric.WithUnit("s"), metric.WithDescription("routing to acknowledgement, per category"))
	return a
}

// Clock returns the App's clock.
func (a *App) Clock() clock.Clock { return a.d.Clock }

func (a *App) stamp(events []*eventsv1.Event) {
	for _, e := range events {
		if e.Producer == "" {
			e.Producer = a.d.Producer
		}
	}
}
