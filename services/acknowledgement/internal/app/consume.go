package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

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
		attribute.String("event.type", lifecycle.EventType(ev)),
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
	before, err := a.d.States.Get(ctx, ev.GetAlertId())
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
		if _, err := a.d.States.Put(ctx, after); err != nil {
			return fmt.Errorf("store state of alert %s: %w", ev.GetAlertId(), err)
		}
		if err := a.applyPlan(ctx, lifecycle.PlanTimers(before, after)); err != nil {
			return err
		}
		if a.d.Changes != nil {
			if err := a.d.Changes.Publish(ctx, after); err != nil {
				a.d.Logger.WarnContext(ctx, "publish alert change to watchers", "alert_id", ev.GetAlertId(), "error", err.Error())
			}
		}
		a.observeApplied(ctx, before, after, ev)
	} else if pos.Offset >= 0 && !lifecycle.Seen(before, ev.GetEventId()) {
		// A redelivery after a crash: what followed the apply may not have
		// happened. Redo it from the stored state (all idempotent).
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
			return fmt.Errorf("append reaction to %s of alert %s: %w", lifecycle.EventType(ev), ev.GetAlertId(), err)
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
		"event_type", lifecycle.EventType(ev), "state", lifecycle.StatusName(after.GetState()), "step", after.GetStep())
}

// applyPlan arms and cancels timers as the lifecycle asks.
func (a *App) applyPlan(ctx context.Context, p lifecycle.TimerPlan) error {
	if len(p.Arm) > 0 {
		ts, err := a.timerRecords(ctx, p.Arm)
		if err != nil {
			return err
		}
		if err := a.d.Timers.ArmMany(ctx, ts...); err != nil {
			return fault.Unavailable(fmt.Sprintf("arm timers of alert %s: %v", p.Arm[0].AlertID, err))
		}
	}
	for _, id := range p.Cancel {
		if _, err := a.d.Timers.Cancel(ctx, id); err != nil {
			return fault.Unavailable(fmt.Sprintf("cancel timer %s: %v", id, err))
		}
	}
	return nil
}

// rearm arms every timer st needs and cancels every other timer it could
// have.
func (a *App) rearm(ctx context.Context, st *lifecycle.State) error {
	ctx = a.stateTrace(ctx, st)
	want := lifecycle.Timers(st)
	keep := map[string]bool{}
	for _, t := range want {
		keep[t.ID] = true
	}
	p := lifecycle.TimerPlan{Arm: want}
	for _, id := range allTimerIDs(st.GetAlertId()) {
		if !keep[id] {
			p.Cancel = append(p.Cancel, id)
		}
	}
	return a.applyPlan(ctx, p)
}

func allTimerIDs(alertID string) []string {
	return []string{
		lifecycle.StepTimerID(alertID),
		lifecycle.ClockTimerID(alertID, eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE),
		lifecycle.ClockTimerID(alertID, eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE),
		lifecycle.ClockTimerID(alertID, eventsv1.ClockKind_CLOCK_KIND_ACTION),
	}
}

// timerPayload is the data of a timer: what DecideTimer needs besides the
// state. Due is kept in nanoseconds (the store keeps milliseconds).
type timerPayload struct {
	Kind   lifecycle.TimerKind `json:"k"`
	Round  uint32              `json:"r"`
	Step   uint32              `json:"s,omitempty"`
	Repeat uint32              `json:"p,omitempty"`
	Clock  int32               `json:"c,omitempty"`
	Due    int64               `json:"d"`
}

// timerRecords turns lifecycle timers into store timers whose payload
// carries the trace context of ctx, so the escalation the timer fires joins
// the alert's trace. The store's due time is rounded up to the millisecond,
// so a timer never fires before its deadline.
func (a *App) timerRecords(ctx context.Context, ts []lifecycle.Timer) ([]timers.Timer, error) {
	out := make([]timers.Timer, 0, len(ts))
	for _, t := range ts {
		data, err := json.Marshal(timerPayload{Kind: t.Kind, Round: t.Round, Step: t.Step, Repeat: t.Repeat, Clock: int32(t.Clock), Due: t.Due.UnixNano()})
		if err != nil {
			return nil, fmt.Errorf("encode timer %s: %w", t.ID, err)
		}
		payload, err := timers.WithTrace(ctx, a.prop, data)
		if err != nil {
			return nil, fmt.Errorf("encode timer %s: %w", t.ID, err)
		}
		out = append(out, timers.Timer{ID: t.ID, Due: ceilMilli(t.Due), Payload: payload})
	}
	return out, nil
}

func decodeTimer(id string, data []byte) (lifecycle.Timer, error) {
	var p timerPayload
	if err := json.Unmarshal(data, &p); err != nil {
		return lifecycle.Timer{}, fmt.Errorf("decode timer %s: %w", id, err)
	}
	if p.Kind != lifecycle.TimerStep && p.Kind != lifecycle.TimerClock {
		return lifecycle.Timer{}, fmt.Errorf("decode timer %s: unknown kind %d", id, p.Kind)
	}
	return lifecycle.Timer{
		ID: id, AlertID: lifecycle.AlertOfTimer(id), Kind: p.Kind, Round: p.Round, Step: p.Step, Repeat: p.Repeat,
		Clock: eventsv1.ClockKind(p.Clock), Due: time.Unix(0, p.Due).UTC(),
	}, nil
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
