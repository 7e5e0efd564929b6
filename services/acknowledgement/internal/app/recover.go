package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
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
	// The worklist's deadline order is indexed as states are stored; a
	// projection stored before that index existed gets it here, once.
	if b, ok := a.d.Lister.(OrderBuilder); ok {
		if err := b.BuildDeadlineOrder(ctx, restored); err != nil {
			return fault.Unavailable(fmt.Sprintf("build the deadline order index: %v", err))
		}
	}
	armStart := time.Now()
	n, err := a.armAll(ctx, restored)
	if err != nil {
		return err
	}
	a.d.Logger.InfoContext(ctx, "alert projection and timers recovered", "alerts", len(restored), "timers", n,
		"arm_ms", time.Since(armStart).Milliseconds(), "took_ms", a.d.Clock.Now().Sub(start).Milliseconds())
	return nil
}

// restore reads the state topic into the store and recreates the epoch. It
// returns the open states. States are written while the topic is still being
// read (the store keeps the newest version of each alert by offset, so the
// order of the writes does not matter).
func (a *App) restore(ctx context.Context) ([]*lifecycle.State, error) {
	t0 := time.Now()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan *lifecycle.State, 4*restoreBatch)
	var wg sync.WaitGroup
	var werr error
	var once sync.Once
	for range recoveryWorkers {
		wg.Go(func() {
			batch := make([]*lifecycle.State, 0, restoreBatch)
			flush := func() bool {
				if len(batch) == 0 {
					return true
				}
				if err := a.d.Recovery.Restore(wctx, batch); err != nil {
					once.Do(func() { werr = err; cancel() })
					return false
				}
				batch = batch[:0]
				return true
			}
			for st := range queue {
				batch = append(batch, st)
				if len(batch) == restoreBatch && !flush() {
					break
				}
			}
			flush()
			for range queue { // drain after an error
			}
		})
	}
	latest := map[string]*lifecycle.State{}
	err := a.d.Topic.ReadAll(wctx, func(st *lifecycle.State) error {
		if cur, ok := latest[st.GetAlertId()]; !ok || st.GetOffset() >= cur.GetOffset() {
			latest[st.GetAlertId()] = st
		}
		select {
		case queue <- st:
			return nil
		case <-wctx.Done():
			return wctx.Err()
		}
	})
	close(queue)
	wg.Wait()
	if werr != nil {
		return nil, fault.Unavailable(fmt.Sprintf("restore alert states: %v", werr))
	}
	if err != nil {
		return nil, fault.Unavailable(fmt.Sprintf("read state topic: %v", err))
	}
	var open []*lifecycle.State
	for _, st := range latest {
		if !lifecycle.IsTerminal(st) {
			open = append(open, st)
		}
	}
	if err := a.d.Recovery.MarkReady(ctx); err != nil {
		return nil, fault.Unavailable(fmt.Sprintf("mark projection restored: %v", err))
	}
	a.d.Logger.InfoContext(ctx, "alert projection restored from the state topic", "alerts", len(latest), "open", len(open),
		"took_ms", time.Since(t0).Milliseconds())
	return open, nil
}

// armAll arms the timer of every state, earliest deadline first. It
// returns how many alert timers it armed.
func (a *App) armAll(ctx context.Context, states []*lifecycle.State) (int, error) {
	all := make([]timers.Timer, 0, len(states))
	for _, st := range states {
		t, ok, err := a.alertTimer(a.stateTrace(ctx, st), st)
		if err != nil {
			return 0, err
		}
		if ok {
			all = append(all, t)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Due.Before(all[j].Due) })
	// Chunks go out in deadline order (the workers take them in turn), so
	// the overdue and nearest timers are armed, and fire, first.
	err := inParallel(ctx, len(all), 1000, func(ctx context.Context, lo, hi int) error {
		return a.d.Timers.ArmMany(ctx, all[lo:hi]...)
	})
	if err != nil {
		return 0, fault.Unavailable(fmt.Sprintf("re-arm timers: %v", err))
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

// recoveryWorkers bounds the concurrent round trips of a recovery: enough
// to hide the Redis round trip, few enough not to starve other clients.
const recoveryWorkers = 4

// inParallel calls fn on consecutive [lo, hi) chunks of n items, with up to
// recoveryWorkers calls at once, chunks started in order. It returns the
// first error.
func inParallel(ctx context.Context, n, chunk int, fn func(ctx context.Context, lo, hi int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errc := make(chan error, recoveryWorkers)
	var wg sync.WaitGroup
	for range recoveryWorkers {
		wg.Go(func() {
			for lo := range next {
				if err := fn(ctx, lo, min(lo+chunk, n)); err != nil {
					errc <- err
					cancel()
					return
				}
			}
		})
	}
feed:
	for lo := 0; lo < n; lo += chunk {
		select {
		case next <- lo:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}
