package app

import (
	"context"
	"fmt"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The overdue watchdog is defence in depth against a lost SLA timer (a bug,
// a deleted Redis key, an operator's mistake): it does not trust the timer
// store at all. The projection store indexes every open alert by the next
// deadline its state needs (written with the state, in the same script);
// the watchdog lists the alerts whose next deadline passed more than a
// bound ago, reads each as the log has it (current: a deadline that was
// decided but not yet applied is not overdue), and for one still overdue
// appends TimerRepaired (the fact, for the safety lead) and arms its timer
// again from that state (due in the past, so it fires at once and decides
// what the deadline owes). Both are idempotent: TimerRepaired's id is one
// per alert and deadline, and the arm converges on the timer the state
// needs; every replica may run the watchdog.

// DeadlineIndex lists alerts by the next deadline stored with their state.
type DeadlineIndex interface {
	// DueBefore returns up to n alert ids whose next deadline is before t,
	// earliest first.
	DueBefore(ctx context.Context, t time.Time, n int) ([]string, error)
}

// WatchdogConfig configures RunWatchdog.
type WatchdogConfig struct {
	// Every is how often the index is swept (on the App's clock).
	Every time.Duration
	// Bound is how late a deadline may be before it counts as lost: more
	// than the timers' worst lateness under faults (a failover, a Redis
	// restart), so that a timer that is merely late is left alone.
	Bound time.Duration
	// Batch bounds the alerts examined per sweep (default 500).
	Batch int
}

// RunWatchdog sweeps every cfg.Every until ctx ends. Errors are logged and
// the next sweep tries again.
func (a *App) RunWatchdog(ctx context.Context, idx DeadlineIndex, cfg WatchdogConfig) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.d.Clock.After(cfg.Every):
		}
		if _, err := a.Sweep(ctx, idx, cfg); err != nil && ctx.Err() == nil {
			a.d.Logger.WarnContext(ctx, "overdue watchdog: sweep failed; will retry", "error", err.Error())
		}
	}
}

// Sweep repairs the alerts whose next deadline passed more than cfg.Bound
// ago with nothing decided, and returns how many it repaired.
func (a *App) Sweep(ctx context.Context, idx DeadlineIndex, cfg WatchdogConfig) (int, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	now := a.d.Clock.Now()
	ids, err := idx.DueBefore(ctx, now.Add(-cfg.Bound), cfg.Batch)
	if err != nil {
		a.noteLost(err)
		return 0, fmt.Errorf("overdue watchdog: %w", err)
	}
	repaired := 0
	var firstErr error
	for _, id := range ids {
		ok, err := a.repair(ctx, id, now, cfg.Bound)
		if err != nil {
			a.noteLost(err)
			if firstErr == nil {
				firstErr = fmt.Errorf("overdue watchdog: alert %s: %w", id, err)
			}
			continue
		}
		if ok {
			repaired++
		}
	}
	return repaired, firstErr
}

// repair repairs one alert if, as the log has it, its next deadline passed
// more than bound before now.
func (a *App) repair(ctx context.Context, alertID string, now time.Time, bound time.Duration) (bool, error) {
	st, _, err := a.current(ctx, alertID)
	if err != nil {
		return false, err
	}
	due, ok := lifecycle.NextDeadline(st)
	if !ok || now.Sub(due) <= bound {
		return false, nil // decided (perhaps not yet applied), or no longer late
	}
	ev, _ := lifecycle.Repaired(st, now)
	if lifecycle.Seen(st, ev.GetEventId()) {
		// Repaired by an earlier sweep (or another replica) whose timer has
		// not decided yet: arm it again, but the fact is already recorded.
		return false, a.rearm(ctx, st)
	}
	a.stamp([]*eventsv1.Event{ev})
	if err := a.d.Log.Append(ctx, ev); err != nil {
		return false, fmt.Errorf("append TimerRepaired: %w", err)
	}
	if err := a.rearm(ctx, st); err != nil {
		return false, err
	}
	r := ev.GetTimerRepaired()
	a.metrics.repaired.Add(ctx, 1, metric.WithAttributes(attribute.String("tenant", st.GetTenant())))
	a.d.Logger.WarnContext(ctx, "overdue watchdog: lost SLA timer re-armed", "alert_id", alertID, "tenant", st.GetTenant(),
		"state", lifecycle.StatusName(st.GetState()), "step", st.GetStep(), "repeat", st.GetRepeat(), "timers", r.GetTimers(),
		"overdue_ms", r.GetOverdueBy().AsDuration().Milliseconds())
	return true, nil
}
