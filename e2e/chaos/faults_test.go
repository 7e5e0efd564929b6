//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-health/herald/e2e/harness"
)

// faultPlan is the schedule of faults over a run of the given length.
type faultPlan struct {
	// killEvery is the mean gap between replica kills (each SIGKILL is
	// followed, after 0.5 to 3 s, by a restart).
	killEvery time.Duration
	// flushAt is when Redis is wiped (FLUSHALL), as a fraction of the run.
	flushAt float64
	// cluster: the brokers are deps.sh's three-broker cluster, so one is
	// restarted cleanly at brokerRestartAt and another SIGKILLed at
	// brokerKillAt and started again brokerDown later.
	cluster         bool
	brokerRestartAt float64
	brokerKillAt    float64
	brokerDown      time.Duration
	// none: no fault at all (the lateness without faults, -chaos.no-faults).
	none bool
}

// faultLog is what was done, with times.
type faultLog struct {
	mu    sync.Mutex
	lines []string
	kills map[string]int
}

func (f *faultLog) add(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines = append(f.lines, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
}

// inject runs the plan over run (from now) until ctx ends or run has
// passed, then brings every replica and broker back.
func inject(ctx context.Context, t *testing.T, s *system, plan faultPlan, run time.Duration) *faultLog {
	f := &faultLog{kills: map[string]int{}}
	start := time.Now()
	at := func(frac float64) time.Duration { return time.Duration(frac * float64(run)) }
	var wg sync.WaitGroup
	defer wg.Wait()
	deps := filepath.Join(harness.RepoRoot(t), "platform", "infra", "deps.sh")
	script := func(args ...string) {
		t0 := time.Now()
		out, err := exec.Command(deps, args...).CombinedOutput()
		if err != nil {
			t.Errorf("deps.sh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		f.add("deps.sh %s done in %v", strings.Join(args, " "), time.Since(t0).Round(time.Millisecond))
	}
	later := func(d time.Duration, fn func()) {
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(d))):
			}
			fn()
		})
	}
	if plan.none {
		f.add("no faults (-chaos.no-faults)")
		return f
	}
	later(at(plan.flushAt), func() {
		err := s.redis.FlushAll(context.Background()).Err()
		f.add("redis FLUSHALL (err %v)", err)
	})
	if plan.cluster {
		later(at(plan.brokerRestartAt), func() {
			f.add("kafka broker 1: clean restart")
			script("cluster-restart", "1")
		})
		later(at(plan.brokerKillAt), func() {
			f.add("kafka broker 2: SIGKILL")
			script("cluster-kill", "2")
			time.Sleep(plan.brokerDown)
			f.add("kafka broker 2: start")
			script("cluster-start", "2")
		})
	}

	// Replica kills until the run ends; never both replicas of a service
	// at once (that would be an outage, not a failover).
	services := []string{"intake", "rules", "acknowledgement", "notification"}
	var order []string
	for time.Since(start) < run && ctx.Err() == nil {
		gap := time.Duration(float64(plan.killEvery) * (0.5 + rand.Float64()))
		select {
		case <-ctx.Done():
		case <-time.After(min(gap, time.Until(start.Add(run)))):
		}
		if time.Since(start) >= run || ctx.Err() != nil {
			break
		}
		// Each service in turn, in a fresh random order every round.
		if len(order) == 0 {
			order = slices.Clone(services)
			rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		svc := order[0]
		order = order[1:]
		rs := s.replicas[svc]
		if !rs[0].isUp() || !rs[1].isUp() {
			continue
		}
		r := rs[rand.IntN(2)]
		down := 500*time.Millisecond + time.Duration(rand.Int64N(int64(2500*time.Millisecond)))
		r.kill9()
		f.mu.Lock()
		f.kills[svc]++
		f.mu.Unlock()
		f.add("SIGKILL %s, restart in %v", r.name(), down.Round(time.Millisecond))
		wg.Go(func() {
			time.Sleep(down)
			if err := r.start(); err != nil {
				t.Errorf("restart %s: %v", r.name(), err)
			}
		})
	}
	wg.Wait()
	// Everything back up before the system is left to converge.
	for _, svc := range services {
		for _, r := range s.replicas[svc] {
			if !r.isUp() {
				if err := r.start(); err != nil {
					t.Errorf("restart %s: %v", r.name(), err)
				}
			}
		}
	}
	if plan.cluster {
		script("cluster-start", "1")
		script("cluster-start", "2")
	}
	return f
}
