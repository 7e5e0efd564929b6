package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herald-health/herald/platform/eventtype"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/timers"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HandleEvent applies one event of the log at pos to the projection and does
// what follows from it (state topic, timers, reactions). It is idempotent and
// must be called in log order per alert (one partition, one goroutine).
// Errors wrapping fault.ErrUnavailable are outages: retry the event.
func (a *App) HandleEvent(ctx context.Context, ev *eventsv1.Event, pos lifecycle.Position) (err error) {
	if h := a.d.Hooks.Received; h != nil {
		h(ev)
	}
	ctx, span := a.tracer.Start(ctx, "acknowledgement.apply", trace.WithAttributes(
		attribute.String("alert.id", ev.GetAlertId()),
		attribute.String("tenant", ev.GetTenant()),
		attribute.String("event.type", eventtype.Of(ev)),
		attribute.String("event.id", ev.GetEventId()),
	))
	defer func() {
		a.noteLost(err)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	if ev.GetAlertId() == "" {
		return permanentf("event %s has no alert id", ev.GetEventId())
	}
	if ev.GetNotificationAttempted() != nil {
		// The notification service's own bookkeeping (a send about to
		// begin, for its rebuild after a Redis loss): nothing in the
		// lifecycle changes, and the outcome (NotificationSent or
		// NotificationFailed) is what the timeline shows.
		return nil
	}
	before, err := a.d.States.Get(ctx, ev.GetAlertId())
	if errors.Is(err, ErrRetired) {
		// Folding it into an empty state would publish a partial state over
		// the alert's whole one on the state topic: dead-letter it, where it
		// is seen (and can be replayed by hand), instead.
		return permanentf("event %s (%s) is for alert %s, which was closed and has expired from the live store", ev.GetEventId(), eventtype.Of(ev), ev.GetAlertId())
	}
	if err != nil {
		return fmt.Errorf("read alert %s: %w", ev.GetAlertId(), err)
	}
	after, applied := lifecycle.Apply(before, ev, pos)
	span.SetAttributes(attribute.Bool("applied", applied), attribute.String("state", lifecycle.StatusName(after.GetState())))
	if applied {
		carrier := propagation.MapCarrier{}
		a.prop.Inject(ctx, carrier)
		after.TraceContext = carrier
		if err := a.d.Topic.Publish(ctx, after); err != nil {
			return fmt.Errorf("publish state of alert %s: %w", ev.GetAlertId(), err)
		}
		stored, err := a.d.States.Put(ctx, after)
		if err != nil {
			return fmt.Errorf("store state of alert %s: %w", ev.GetAlertId(), err)
		}
		switch {
		case !stored:
			// A newer state is stored (another replica ran ahead during
			// a rebalance): arm what that one needs, never an older plan.
			if err := a.rearmStored(ctx, ev.GetAlertId()); err != nil {
				return err
			}
		case !slices.Equal(lifecycle.Timers(before), lifecycle.Timers(after)):
			if err := a.syncTimer(ctx, after); err != nil {
				return err
			}
		}
		a.observeApplied(ctx, before, after, ev)
	} else if pos.Offset >= 0 {
		// A redelivery (the handler died between the store and the arm: a
		// SIGKILL, a rebalance cancelling the context, a Redis error) or a
		// record appended twice. What follows the store may not have
		// happened: redo it from the stored state. The alert's timer is
		// derived from that state, so arming it again converges on the same
		// timer (a no-op when it is already armed as the state needs).
		if err := a.d.Topic.Publish(ctx, after); err != nil {
			return fmt.Errorf("publish state of alert %s: %w", ev.GetAlertId(), err)
		}
		if err := a.rearm(ctx, after); err != nil {
			return err
		}
	}
	if reactions := lifecycle.React(after, ev, a.d.Clock.Now()); len(reactions) > 0 {
		a.stamp(reactions)
		if err := a.d.Log.Append(ctx, reactions...); err != nil {
			return fmt.Errorf("append reaction to %s of alert %s: %w", eventtype.Of(ev), ev.GetAlertId(), err)
		}
		a.countAppended(ctx, reactions)
	}
	if h := a.d.Hooks.Applied; h != nil {
		h(after, ev, applied)
	}
	return nil
}

func (a *App) observeApplied(ctx context.Context, before, after *lifecycle.State, ev *eventsv1.Event) {
	if _, ok := ev.GetPayload().(*eventsv1.Event_AlertAcknowledged); ok && !lifecycle.IsAcknowledged(before) && lifecycle.IsAcknowledged(after) && after.GetRaisedAt() != nil {
		d := after.GetAcknowledgedAt().AsTime().Sub(after.GetRaisedAt().AsTime())
		a.metrics.toAck.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("category", after.GetCategory().String()), attribute.String("tenant", after.GetTenant())))
	}
	a.d.Logger.DebugContext(ctx, "event applied", "alert_id", after.GetAlertId(), "tenant", after.GetTenant(),
		"event_type", eventtype.Of(ev), "state", lifecycle.StatusName(after.GetState()), "step", after.GetStep())
}

// Each alert has one timer in the store (id "<alert>:timers"), due at the
// earliest of the lifecycle timers its state needs (the step timeout and the
// open clocks), which its payload lists. One timer per alert instead of up to
// four keeps the store small and a rebuild fast; the decisions stay per
// lifecycle timer.

// AlertTimerID is the id of an alert's timer in the store.
func AlertTimerID(alertID string) string { return alertID + ":timers" }

func alertOfTimerID(id string) string {
	if a, ok := strings.CutSuffix(id, ":timers"); ok {
		return a
	}
	return lifecycle.AlertOfTimer(id)
}

// syncTimer arms the alert's timer for what st needs (moving its deadline
// and payload) or cancels it when st needs none. The payload carries the
// trace context of ctx.
func (a *App) syncTimer(ctx context.Context, st *lifecycle.State) error {
	if h := a.d.Hooks.BeforeArm; h != nil {
		if err := h(ctx, st); err != nil {
			return fault.Unavailable(fmt.Sprintf("arm timer of alert %s: %v", st.GetAlertId(), err))
		}
	}
	t, ok, err := a.alertTimer(ctx, st)
	if err != nil {
		return err
	}
	if !ok {
		if _, err := a.d.Timers.Cancel(ctx, AlertTimerID(st.GetAlertId())); err != nil {
			return fault.Unavailable(fmt.Sprintf("cancel timer of alert %s: %v", st.GetAlertId(), err))
		}
		return nil
	}
	if err := a.d.Timers.ArmMany(ctx, t); err != nil {
		return fault.Unavailable(fmt.Sprintf("arm timer of alert %s: %v", st.GetAlertId(), err))
	}
	return nil
}

// rearm arms the alert's timer from a stored state, in the alert's trace.
func (a *App) rearm(ctx context.Context, st *lifecycle.State) error {
	return a.syncTimer(a.stateTrace(ctx, st), st)
}

// rearmStored arms the alert's timer from the state in the store.
func (a *App) rearmStored(ctx context.Context, alertID string) error {
	st, err := a.d.States.Get(ctx, alertID)
	if err != nil {
		return fmt.Errorf("read alert %s: %w", alertID, err)
	}
	if st == nil {
		return nil
	}
	return a.rearm(ctx, st)
}

// timerPayload is one lifecycle timer in an alert timer's payload: what
// DecideTimer needs besides the state. Due is in nanoseconds (the store
// keeps milliseconds).
type timerPayload struct {
	Kind   lifecycle.TimerKind `json:"k"`
	Round  uint32              `json:"r"`
	Step   uint32              `json:"s,omitempty"`
	Repeat uint32              `json:"p,omitempty"`
	Clock  int32               `json:"c,omitempty"`
	Due    int64               `json:"d"`
}

// alertTimer builds the store timer of st: due at the earliest lifecycle
// timer (rounded up to the millisecond, so it never fires early), the
// lifecycle timers and the trace context of ctx in its payload. ok is false
// when st needs no timer.
func (a *App) alertTimer(ctx context.Context, st *lifecycle.State) (timers.Timer, bool, error) {
	ts := lifecycle.Timers(st)
	if len(ts) == 0 {
		return timers.Timer{}, false, nil
	}
	list := make([]timerPayload, 0, len(ts))
	due := ts[0].Due
	for _, t := range ts {
		list = append(list, timerPayload{Kind: t.Kind, Round: t.Round, Step: t.Step, Repeat: t.Repeat, Clock: int32(t.Clock), Due: t.Due.UnixNano()})
		if t.Due.Before(due) {
			due = t.Due
		}
	}
	id := AlertTimerID(st.GetAlertId())
	data, err := json.Marshal(list)
	if err != nil {
		return timers.Timer{}, false, fmt.Errorf("encode timer %s: %w", id, err)
	}
	payload, err := timers.WithTrace(ctx, a.prop, data)
	if err != nil {
		return timers.Timer{}, false, fmt.Errorf("encode timer %s: %w", id, err)
	}
	return timers.Timer{ID: id, Due: ceilMilli(due), Payload: payload}, true, nil
}

// decodeTimers reads the lifecycle timers of a store timer's payload (a
// single object, as written by earlier versions, is accepted too).
func decodeTimers(id string, data []byte) ([]lifecycle.Timer, error) {
	var list []timerPayload
	if err := json.Unmarshal(data, &list); err != nil {
		var one timerPayload
		if err2 := json.Unmarshal(data, &one); err2 != nil {
			return nil, fmt.Errorf("decode timer %s: %w", id, err)
		}
		list = []timerPayload{one}
	}
	alertID := alertOfTimerID(id)
	out := make([]lifecycle.Timer, 0, len(list))
	for _, p := range list {
		t := lifecycle.Timer{AlertID: alertID, Kind: p.Kind, Round: p.Round, Step: p.Step, Repeat: p.Repeat,
			Clock: eventsv1.ClockKind(p.Clock), Due: time.Unix(0, p.Due).UTC()}
		switch p.Kind {
		case lifecycle.TimerStep:
			t.ID = lifecycle.StepTimerID(alertID)
		case lifecycle.TimerClock:
			t.ID = lifecycle.ClockTimerID(alertID, t.Clock)
		default:
			return nil, fmt.Errorf("decode timer %s: unknown kind %d", id, p.Kind)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("decode timer %s: no lifecycle timers", id)
	}
	return out, nil
}

func ceilMilli(t time.Time) time.Time {
	r := t.Truncate(time.Millisecond)
	if r.Before(t) {
		r = r.Add(time.Millisecond)
	}
	return r
}

func (a *App) countAppended(ctx context.Context, events []*eventsv1.Event) {
	for _, e := range events {
		attrs := metric.WithAttributes(attribute.String("tenant", e.GetTenant()))
		switch p := e.GetPayload().(type) {
		case *eventsv1.Event_AlertEscalated:
			a.metrics.escalations.Add(ctx, 1, attrs, metric.WithAttributes(attribute.String("reason", p.AlertEscalated.GetReason().String())))
		case *eventsv1.Event_SlaBreached:
			a.metrics.breaches.Add(ctx, 1, attrs, metric.WithAttributes(attribute.String("clock", p.SlaBreached.GetClock().String())))
		case *eventsv1.Event_FailsafeQueued:
			a.metrics.failsafe.Add(ctx, 1, attrs)
		}
	}
}

type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

// IsPermanent reports whether err can never be fixed by retrying (the
// consumer dead-letters the record).
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

func permanentf(format string, args ...any) error {
	return &permanentError{msg: fmt.Sprintf(format, args...)}
}

// stateTrace returns ctx carrying the trace context stored with st (the
// trace of the last event applied), so a timer armed from a stored state
// joins the alert's trace.
func (a *App) stateTrace(ctx context.Context, st *lifecycle.State) context.Context {
	if len(st.GetTraceContext()) == 0 {
		return ctx
	}
	return a.prop.Extract(ctx, propagation.MapCarrier(st.GetTraceContext()))
}
