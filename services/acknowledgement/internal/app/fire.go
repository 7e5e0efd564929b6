package app

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/herald-health/herald/platform/eventtype"
	"github.com/herald-health/herald/platform/timers"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
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

// errRearmed is returned by FireTimer after it re-armed the alert's timer
// from the current state (nothing was due any more): the poller's release
// then either finds its lease superseded by the new arm (and leaves the new
// timer be) or, if nothing changed, keeps the timer for a later retry. Never
// is a timer confirmed away while its alert still needs one.
var errRearmed = errors.New("timer re-armed from the current state")

// maxUnknownAttempts bounds how often a timer of an alert unknown to the
// projection is retried (with the poller's backoff, minutes) before it is
// dropped as garbage.
const maxUnknownAttempts = 60

// FireTimer handles a claimed alert timer: it re-reads the alert's state from
// the projection, decides every lifecycle timer of the payload that is due,
// and appends the decided events (deterministic ids, so a second fire is
// harmless). It returns nil once they are durable (the poller then confirms
// the timer; the consumer arms the next one when it applies them); an error
// releases the timer for a retry. The span continues the trace the timer
// was armed under.
func (a *App) FireTimer(ctx context.Context, c timers.Claimed) (err error) {
	pctx, data, err := timers.FromTrace(ctx, a.prop, c.Payload)
	if err != nil {
		// An unreadable payload can never fire: drop it (the next event of
		// the alert, or a re-arm, arms a good one).
		a.d.Logger.ErrorContext(ctx, "dropping timer with unreadable payload", "timer", c.ID, "error", err.Error())
		return nil
	}
	ts, err := decodeTimers(c.ID, data)
	if err != nil {
		a.d.Logger.ErrorContext(ctx, "dropping timer with unreadable payload", "timer", c.ID, "error", err.Error())
		return nil
	}
	alertID := ts[0].AlertID
	now := a.d.Clock.Now()
	ctx, span := a.tracer.Start(pctx, "acknowledgement.timer", trace.WithAttributes(
		attribute.String("alert.id", alertID),
		attribute.String("timer.id", c.ID),
		attribute.Int("attempt", c.Attempt),
		attribute.Int64("lateness_ms", now.Sub(c.Due).Milliseconds()),
	))
	defer func() {
		a.noteLost(err)
		if err != nil && !errors.Is(err, ErrBehind) && !errors.Is(err, errRearmed) {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()

	// Decide on the alert as the log has it, not as a lagging projection
	// has it (fresh.go); if the log cannot be read, retry shortly.
	st, _, err := a.current(ctx, alertID)
	if err != nil {
		if errors.Is(err, errLogUnread) {
			return fmt.Errorf("fire timer %s: %w (%v)", c.ID, ErrBehind, err)
		}
		return fmt.Errorf("fire timer %s: %w", c.ID, err)
	}
	// Decide the due lifecycle timers earliest first and fire only the first
	// that fires: the consumer re-arms the alert's timer when it applies
	// that event, and the next due one fires then, decided on the new state
	// (deciding two at once would decide the second on a state the first
	// is about to change, and append it twice).
	slices.SortStableFunc(ts, func(x, y lifecycle.Timer) int { return x.Due.Compare(y.Due) })
	var (
		events []*eventsv1.Event
		first  lifecycle.Timer
		behind bool
	)
	for _, t := range ts {
		if t.Due.After(now) {
			break
		}
		verdict, evs := lifecycle.DecideTimer(st, t, now)
		span.AddEvent("decided", trace.WithAttributes(attribute.Int("timer.kind", int(t.Kind)), attribute.Int("step", int(t.Step)),
			attribute.Int("repeat", int(t.Repeat)), attribute.String("verdict", verdict.String())))
		if verdict == lifecycle.Behind {
			behind = true
			break
		}
		if verdict == lifecycle.Fire {
			a.metrics.lateness.Record(ctx, now.Sub(t.Due).Seconds(), metric.WithAttributes(attribute.Int("timer.kind", int(t.Kind))))
			events, first = evs, t
			break
		}
	}
	span.SetAttributes(attribute.String("tenant", st.GetTenant()), attribute.Int("events", len(events)))
	switch {
	case behind:
		if st == nil && c.Attempt >= maxUnknownAttempts {
			a.d.Logger.ErrorContext(ctx, "dropping timer of an alert the projection does not know", "timer", c.ID, "attempts", c.Attempt)
			return nil
		}
		return fmt.Errorf("fire timer %s: %w", c.ID, ErrBehind)
	case len(events) == 0:
		// Nothing to do at this version: the timer was stale (the alert
		// moved on, or a re-arm from an older state overwrote a newer
		// timer during a recovery). Arm what the current state needs.
		if len(lifecycle.Timers(st)) == 0 {
			if _, err := a.d.Timers.Cancel(ctx, c.ID); err != nil {
				return fmt.Errorf("fire timer %s: cancel: %w", c.ID, err)
			}
			return nil
		}
		if err := a.rearm(ctx, st); err != nil {
			return fmt.Errorf("fire timer %s: %w", c.ID, err)
		}
		return fmt.Errorf("fire timer %s: %w", c.ID, errRearmed)
	}
	a.stamp(events)
	if h := a.d.Hooks.BeforeAppend; h != nil {
		h(ctx, first, events)
	}
	if err := a.d.Log.Append(ctx, events...); err != nil {
		return fmt.Errorf("fire timer %s: append %s: %w", c.ID, eventtype.Of(events[0]), err)
	}
	a.countAppended(ctx, events)
	for _, e := range events {
		a.d.Logger.InfoContext(ctx, "timer fired", "alert_id", alertID, "tenant", st.GetTenant(), "timer", c.ID,
			"event_type", eventtype.Of(e), "step", st.GetStep(), "lateness_ms", now.Sub(c.Due).Milliseconds())
	}
	if h := a.d.Hooks.AfterAppend; h != nil {
		h(ctx, first, events)
	}
	return nil
}
