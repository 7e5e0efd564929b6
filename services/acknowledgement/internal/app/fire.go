package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/herald-health/herald/platform/timers"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ErrBehind is returned by FireTimer when the projection has not caught up
// with the event that armed the timer: the poller releases the timer and it
// fires again shortly, rather than being decided on stale state.
var ErrBehind = errors.New("projection is behind the timer")

// FireTimer handles a claimed timer: it re-reads the alert's state from the
// projection, decides, and appends the decided events (deterministic ids, so
// a second fire is harmless). It returns nil once the outcome is durable (the
// poller then confirms the timer); an error releases the timer for a retry.
// The span continues the trace the timer was armed under.
func (a *App) FireTimer(ctx context.Context, c timers.Claimed) (err error) {
	pctx, data, err := timers.FromTrace(ctx, a.prop, c.Payload)
	if err != nil {
		// An unreadable payload can never fire: drop it (the next event of
		// the alert, or a re-arm, arms a good one).
		a.d.Logger.ErrorContext(ctx, "dropping timer with unreadable payload", "timer", c.ID, "error", err.Error())
		return nil
	}
	t, err := decodeTimer(c.ID, data)
	if err != nil {
		a.d.Logger.ErrorContext(ctx, "dropping timer with unreadable payload", "timer", c.ID, "error", err.Error())
		return nil
	}
	now := a.d.Clock.Now()
	ctx, span := a.tracer.Start(pctx, "acknowledgement.timer", trace.WithAttributes(
		attribute.String("alert.id", t.AlertID),
		attribute.String("timer.id", c.ID),
		attribute.Int("timer.kind", int(t.Kind)),
		attribute.Int("step", int(t.Step)),
		attribute.Int("repeat", int(t.Repeat)),
		attribute.Int("attempt", c.Attempt),
		attribute.Int64("lateness_ms", now.Sub(t.Due).Milliseconds()),
	))
	defer func() {
		a.noteLost(err)
		if err != nil && !errors.Is(err, ErrBehind) {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	a.metrics.lateness.Record(ctx, now.Sub(t.Due).Seconds(), metric.WithAttributes(attribute.Int("timer.kind", int(t.Kind))))

	st, err := a.d.States.Get(ctx, t.AlertID)
	if err != nil {
		return fmt.Errorf("fire timer %s: read alert: %w", c.ID, err)
	}
	verdict, events := lifecycle.DecideTimer(st, t, now)
	span.SetAttributes(attribute.String("verdict", verdict.String()), attribute.String("tenant", st.GetTenant()))
	switch verdict {
	case lifecycle.Behind:
		if st == nil && c.Attempt >= maxUnknownAttempts {
			a.d.Logger.ErrorContext(ctx, "dropping timer of an alert the projection does not know", "timer", c.ID, "attempts", c.Attempt)
			return nil
		}
		return fmt.Errorf("fire timer %s: %w", c.ID, ErrBehind)
	case lifecycle.Fire:
	default:
		// A stale timer may be the trace of a lost update: a re-arm from
		// an older state (during recovery) can overwrite a newer timer of
		// the same id. Arm what the current state needs, so such a loss
		// heals itself (arming unchanged timers is a no-op).
		if st != nil {
			if err := a.healTimers(ctx, st); err != nil {
				return err
			}
		}
		return nil
	}
	a.stamp(events)
	if h := a.d.Hooks.BeforeAppend; h != nil {
		h(ctx, t, events)
	}
	if err := a.d.Log.Append(ctx, events...); err != nil {
		return fmt.Errorf("fire timer %s: append %s: %w", c.ID, lifecycle.EventType(events[0]), err)
	}
	a.countAppended(ctx, events)
	a.d.Logger.InfoContext(ctx, "timer fired", "alert_id", t.AlertID, "tenant", st.GetTenant(), "timer", c.ID,
		"event_type", lifecycle.EventType(events[0]), "step", st.GetStep(), "lateness_ms", now.Sub(t.Due).Milliseconds())
	if h := a.d.Hooks.AfterAppend; h != nil {
		h(ctx, t, events)
	}
	return nil
}

// maxUnknownAttempts bounds how often a timer of an alert unknown to the
// projection is retried (with the poller's backoff, minutes) before it is
// dropped as garbage.
const maxUnknownAttempts = 60

// healTimers arms the timers st needs. When that includes the id firing now
// (an overwritten step timer), the new arm supersedes this claim: the
// poller's confirm then reports a lost lease and leaves the new timer be.
func (a *App) healTimers(ctx context.Context, st *lifecycle.State) error {
	want := lifecycle.Timers(st)
	if len(want) == 0 {
		return nil
	}
	return a.applyPlan(a.stateTrace(ctx, st), lifecycle.TimerPlan{Arm: want})
}
