package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/timers"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
)

// restoreLockTTL bounds how long a replica that died mid-restore blocks the
// others.
const restoreLockTTL = 2 * time.Minute

// restoreBatch is how many states are written to the store per round trip.
const restoreBatch = 500

// Recover makes the projection and the timers whole after Redis lost its
// data (or on a first start). If the projection's epoch is missing, one
// replica (under a lock) restores every state from the compacted state topic
// and recreates the epoch; the others wait. Then every open timer is armed
// again, earliest deadline first; overdue ones fire at once, and once (their
// events have deterministic ids and the fold skips repeats).
//
// It is the timer poller's OnEpochLost, and also runs when a handler finds
// the projection lost. Safe to call concurrently and repeatedly.
func (a *App) Recover(ctx context.Context, owner string) error {
	start := a.d.Clock.Now()
	ready, err := a.d.Recovery.Ready(ctx)
	if err != nil {
		return fault.Unavailable(fmt.Sprintf("check projection epoch: %v", err))
	}
	var restored []*lifecycle.State
	if !ready {
		locked, err := a.d.Recovery.TryLock(ctx, owner, restoreLockTTL)
		if err != nil {
			return fault.Unavailable(fmt.Sprintf("take restore lock: %v", err))
		}
		if !locked {
			return fault.Unavailable("another replica is restoring the alert projection")
		}
		defer func() { _ = a.d.Recovery.Unlock(context.WithoutCancel(ctx), owner) }()
		// Someone may have finished between Ready and TryLock.
		if ready, err = a.d.Recovery.Ready(ctx); err != nil {
			return fault.Unavailable(fmt.Sprintf("check projection epoch: %v", err))
		}
		if !ready {
			restored, err = a.restore(ctx)
			if err != nil {
				return err
			}
		}
	}
	if restored == nil {
		err := a.d.Recovery.ForEachOpen(ctx, func(st *lifecycle.State) error {
			restored = append(restored, st)
			return nil
		})
		if err != nil {
			return fault.Unavailable(fmt.Sprintf("list open alerts: %v", err))
		}
	}
	n, err := a.armAll(ctx, restored)
	if err != nil {
		return err
	}
	a.d.Logger.InfoContext(ctx, "alert projection and timers recovered", "alerts", len(restored), "timers", n,
		"took_ms", a.d.Clock.Now().Sub(start).Milliseconds())
	return nil
}

// restore reads the state topic into the store and recreates the epoch. It
// returns the open states.
func (a *App) restore(ctx context.Context) ([]*lifecycle.State, error) {
	latest := map[string]*lifecycle.State{}
	err := a.d.Topic.ReadAll(ctx, func(st *lifecycle.State) error {
		if cur, ok := latest[st.GetAlertId()]; !ok || st.GetOffset() >= cur.GetOffset() {
			latest[st.GetAlertId()] = st
		}
		return nil
	})
	if err != nil {
		return nil, fault.Unavailable(fmt.Sprintf("read state topic: %v", err))
	}
	all := make([]*lifecycle.State, 0, len(latest))
	var open []*lifecycle.State
	for _, st := range latest {
		all = append(all, st)
		if !lifecycle.IsTerminal(st) {
			open = append(open, st)
		}
	}
	for i := 0; i < len(all); i += restoreBatch {
		if err := a.d.Recovery.Restore(ctx, all[i:min(i+restoreBatch, len(all))]); err != nil {
			return nil, fault.Unavailable(fmt.Sprintf("restore alert states: %v", err))
		}
	}
	if err := a.d.Recovery.MarkReady(ctx); err != nil {
		return nil, fault.Unavailable(fmt.Sprintf("mark projection restored: %v", err))
	}
	a.d.Logger.InfoContext(ctx, "alert projection restored from the state topic", "alerts", len(all), "open", len(open))
	return open, nil
}

// armAll arms the timers of every state, earliest deadline first.
func (a *App) armAll(ctx context.Context, states []*lifecycle.State) (int, error) {
	type pending struct {
		rec timers.Timer
		due time.Time
	}
	var all []pending
	for _, st := range states {
		ts := lifecycle.Timers(st)
		if len(ts) == 0 {
			continue
		}
		recs, err := a.timerRecords(a.stateTrace(ctx, st), ts)
		if err != nil {
			return 0, err
		}
		for i, r := range recs {
			all = append(all, pending{rec: r, due: ts[i].Due})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].due.Before(all[j].due) })
	const chunk = 2000
	batch := make([]timers.Timer, 0, chunk)
	for i := 0; i < len(all); i += chunk {
		batch = batch[:0]
		for _, p := range all[i:min(i+chunk, len(all))] {
			batch = append(batch, p.rec)
		}
		if err := a.d.Timers.ArmMany(ctx, batch...); err != nil {
			return 0, fault.Unavailable(fmt.Sprintf("re-arm timers: %v", err))
		}
	}
	return len(all), nil
}

// RunRecovery watches the projection's epoch until ctx ends: every `every`,
// and at once when a handler or command found the projection lost, it runs
// Recover if the epoch is missing. Errors are logged and retried.
func (a *App) RunRecovery(ctx context.Context, owner string, every time.Duration) error {
	if every <= 0 {
		every = time.Second
	}
	for {
		ready, err := a.d.Recovery.Ready(ctx)
		if err == nil && !ready {
			if err = a.Recover(ctx, owner); err == nil {
				continue
			}
		}
		if err != nil && ctx.Err() == nil {
			a.d.Logger.WarnContext(ctx, "alert projection recovery: will retry", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.lost:
		case <-time.After(every):
		}
	}
}

// noteLost wakes RunRecovery when err says the projection was lost.
func (a *App) noteLost(err error) {
	if err != nil && errors.Is(err, ErrProjectionLost) {
		select {
		case a.lost <- struct{}{}:
		default:
		}
	}
}
