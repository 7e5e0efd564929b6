package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herald-health/herald/platform/fault"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Outcome is the answer to a command: the state after it and the id of the
// event it appended (or appended the first time, for a repeated request).
type Outcome struct {
	State   *lifecycle.State
	EventID string
}

// Acknowledge records that an identified person accepted responsibility.
func (a *App) Acknowledge(ctx context.Context, alertID string, c lifecycle.Acknowledge) (Outcome, error) {
	return a.command(ctx, "acknowledge", alertID, func(st *lifecycle.State, now time.Time) (lifecycle.Decision, error) {
		return lifecycle.DecideAcknowledge(st, alertID, c, now)
	})
}

// Decline records that a recipient declined; the consumer then escalates.
func (a *App) Decline(ctx context.Context, alertID string, c lifecycle.Decline) (Outcome, error) {
	return a.command(ctx, "decline", alertID, func(st *lifecycle.State, now time.Time) (lifecycle.Decision, error) {
		return lifecycle.DecideDecline(st, alertID, c, now)
	})
}

// RecordAction records what was done.
func (a *App) RecordAction(ctx context.Context, alertID string, c lifecycle.RecordAction) (Outcome, error) {
	return a.command(ctx, "record_action", alertID, func(st *lifecycle.State, now time.Time) (lifecycle.Decision, error) {
		return lifecycle.DecideRecordAction(st, alertID, c, now)
	})
}

// MarkRead records that a person opened the alert.
func (a *App) MarkRead(ctx context.Context, alertID string, c lifecycle.MarkRead) (Outcome, error) {
	return a.command(ctx, "mark_read", alertID, func(st *lifecycle.State, now time.Time) (lifecycle.Decision, error) {
		return lifecycle.DecideMarkRead(st, alertID, c, now)
	})
}

// Close closes an alert (fail-safe officer, with a reason).
func (a *App) Close(ctx context.Context, alertID string, c lifecycle.Close) (Outcome, error) {
	return a.command(ctx, "close", alertID, func(st *lifecycle.State, now time.Time) (lifecycle.Decision, error) {
		return lifecycle.DecideClose(st, alertID, c, now)
	})
}

// command validates against the current projection, appends the decided
// event durably, then waits (bounded) for the projection to apply it, so the
// answer says what the fold made of it. When another command reached the
// log first, the event is recorded with no effect and the caller gets
// FailedPrecondition naming the state; a repeat of the request gets the same
// answer.
func (a *App) command(ctx context.Context, name, alertID string, decide func(*lifecycle.State, time.Time) (lifecycle.Decision, error)) (Outcome, error) {
	ctx, span := a.tracer.Start(ctx, "acknowledgement."+name, trace.WithAttributes(attribute.String("alert.id", alertID)))
	defer span.End()
	// Decide on the alert as the log has it (fresh.go): a projection behind
	// the log (a replica died with the partition, a catch-up) must neither
	// refuse an acknowledgement of an alert already routed nor accept one
	// for an alert already closed.
	st, _, err := a.current(ctx, alertID)
	if err != nil {
		a.noteLost(err)
		return Outcome{}, fmt.Errorf("%s alert %s: %w", name, alertID, err)
	}
	if check := checkOf(ctx); check != nil && st != nil && st.GetState() != 0 {
		if err := check(st); err != nil {
			return Outcome{}, err
		}
	}
	d, err := decide(st, a.d.Clock.Now())
	if err != nil {
		return Outcome{}, err
	}
	if d.Replayed {
		span.SetAttributes(attribute.Bool("replayed", true))
		return a.outcome(st, d.EventID)
	}
	a.stamp([]*eventsv1.Event{d.Event})
	if err := a.d.Log.Append(ctx, d.Event); err != nil {
		return Outcome{}, fmt.Errorf("%s alert %s: append: %w", name, alertID, err)
	}
	span.SetAttributes(attribute.String("tenant", d.Event.GetTenant()))
	got, err := a.waitFor(ctx, alertID, d.EventID)
	if err != nil || got == nil {
		// The event is durable; the projection will apply it. Answer from
		// the fold of the state the command was decided on.
		folded, _ := lifecycle.Apply(st, d.Event, lifecycle.Position{Offset: -1})
		return a.outcome(folded, d.EventID)
	}
	return a.outcome(got, d.EventID)
}

func (a *App) outcome(st *lifecycle.State, eventID string) (Outcome, error) {
	for _, e := range st.GetTimeline() {
		if e.GetEventId() == eventID && e.GetNoEffect() {
			return Outcome{}, fault.Precondition(fmt.Sprintf("alert %s is %s: another change reached it first; the request was recorded with no effect",
				st.GetAlertId(), lifecycle.StatusName(st.GetState())))
		}
	}
	return Outcome{State: st, EventID: eventID}, nil
}

// logViewAfter is how long a command waits for the projection to apply its
// event before it reads the alert's state from the log instead (a
// projection that is not there by then is stalled: its partition's owner
// died or is catching up).
const logViewAfter = 100 * time.Millisecond

// waitFor polls the projection until it holds eventID, for at most
// CommandWait; after logViewAfter it also reads the alert from the log
// (read-your-writes: the event is durable, so the log has it). It returns
// nil when the wait ran out.
func (a *App) waitFor(ctx context.Context, alertID, eventID string) (*lifecycle.State, error) {
	start := time.Now()
	deadline := start.Add(a.d.CommandWait)
	nextLogView := start.Add(logViewAfter)
	delay := 5 * time.Millisecond
	for {
		st, err := a.d.States.Get(ctx, alertID)
		if err != nil && !errors.Is(err, ErrProjectionLost) {
			return nil, err
		}
		if lifecycle.Seen(st, eventID) {
			return st, nil
		}
		if a.d.Tail != nil && !time.Now().Before(nextLogView) {
			if cur, _, err := a.current(ctx, alertID); err == nil && lifecycle.Seen(cur, eventID) {
				return cur, nil
			}
			nextLogView = time.Now().Add(4 * logViewAfter)
		}
		if time.Now().After(deadline) {
			return nil, nil
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

type checkKey struct{}

// WithCheck returns ctx carrying check: a command made with it runs check
// on the alert's fresh state (as the log has it) before deciding, and
// fails with check's error. The gRPC API passes its authorization here
// (who may act on this alert), so that it is decided on the same state as
// the command. An alert not known yet is left to the command (NotFound).
func WithCheck(ctx context.Context, check func(*lifecycle.State) error) context.Context {
	return context.WithValue(ctx, checkKey{}, check)
}

func checkOf(ctx context.Context) func(*lifecycle.State) error {
	f, _ := ctx.Value(checkKey{}).(func(*lifecycle.State) error)
	return f
}
