//go:build chaos

package chaos

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/e2e/harness"
	"github.com/herald-health/herald/platform/testinfra"
)

var (
	long      = flag.Bool("chaos.long", false, "the long form (make chaos): 6 minutes of load, a kill every ~8 s, up to 5 minutes to converge")
	duration  = flag.Duration("chaos.duration", 0, "how long to drive load (default 40s, or 6m with -chaos.long)")
	rate      = flag.Float64("chaos.rate", 30, "alerts per second")
	killEvery = flag.Duration("chaos.kill-every", 0, "mean gap between replica kills (default 4s, or 8s with -chaos.long)")
	window    = flag.Duration("chaos.window", 2*time.Second, "race window for a message with no NotificationAttempted (none expected): begun within it after an acknowledgement in the log it is a race, beyond it a failure; a message with one is judged by offsets (decided after the acknowledgement: a failure; before: on the wire, measured)")
	converge  = flag.Duration("chaos.converge", 0, "how long to wait, after the load, for every alert to come to rest (default 3m, or 5m with -chaos.long)")
	logDir    = flag.String("chaos.logs", "", "folder for the replicas' logs (default a temporary one, removed after the test)")
	envFlag   = flag.String("chaos.env", "", "extra settings per service, e.g. notification:HERALD_LEASE=10s,acknowledgement:HERALD_TIMER_LEASE=5s")
	seed      = flag.Uint64("chaos.seed", 0, "seed of the acknowledgement plans (default random, printed)")
	reportTo  = flag.String("chaos.report", "", "also append the report to this file")
	noFaults  = flag.Bool("chaos.no-faults", false, "no kill, no wipe, no broker fault: the same load and observer, for the lateness without faults")
)

// bins holds the service binaries, built once.
var bins map[string]string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "herald-chaos-bin")
	if err != nil {
		panic(err)
	}
	bins, err = harness.BuildInto(dir, harness.Services...)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// TestChaos runs two replicas of every service under ~30 alerts/s while
// replicas are SIGKILLed and restarted, Redis is wiped once and (on the
// three-broker cluster) a broker is restarted and another killed; then it
// checks the invariants from the log and the sinks (package comment).
func TestChaos(t *testing.T) {
	load, kill, wait := 40*time.Second, 4*time.Second, 3*time.Minute
	if *long {
		load, kill, wait = 6*time.Minute, 8*time.Second, 5*time.Minute
	}
	if *duration > 0 {
		load = *duration
	}
	if *killEvery > 0 {
		kill = *killEvery
	}
	if *converge > 0 {
		wait = *converge
	}
	brokers, replication, cluster := testinfra.KafkaBrokers(t), 1, false
	if b := os.Getenv("HERALD_CHAOS_KAFKA_BROKERS"); b != "" {
		brokers, replication, cluster = strings.Split(b, ","), 3, true
	} else {
		t.Logf("HERALD_CHAOS_KAFKA_BROKERS unset: one broker (%v), no broker faults (deps.sh cluster-up starts the three-broker cluster)", brokers)
	}
	dir := *logDir
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	extra := serviceEnv{}
	for _, kv := range strings.Split(*envFlag, ",") {
		if svc, setting, ok := strings.Cut(kv, ":"); ok {
			extra[svc] = append(extra[svc], setting)
		}
	}
	s := *seed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("chaos: %v of load at %.0f alerts/s, a replica kill every ~%v, brokers %v (replication %d), seed %d, logs in %s",
		load, *rate, kill, brokers, replication, s, dir)

	sys := startSystem(t, brokers, replication, extra, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs := observe(ctx, t, sys.log)
	acks := acknowledge(ctx, t, sys, obs, s)

	runID := fmt.Sprintf("%05d", rand.IntN(100000))
	loadDone := make(chan *loadStats)
	go func() { loadDone <- drive(ctx, sys, runID, *rate, load) }()
	plan := faultPlan{
		killEvery: kill, flushAt: 0.5, cluster: cluster,
		brokerRestartAt: 0.25, brokerKillAt: 0.65, brokerDown: max(10*time.Second, load/20),
	}
	if *noFaults {
		plan = faultPlan{none: true}
	}
	faults := inject(ctx, t, sys, plan, load)
	stats := <-loadDone
	t.Logf("load done: %d sent, %d accepted, %d refused, %d resends", stats.sent, len(stats.accepted), len(stats.refused), stats.retries.Load())

	// Converge: every alert at rest, every group at the log's end and no
	// notification job left, twice in a row; or the wait runs out.
	var v *verdict
	deadline := time.Now().Add(wait)
	calm := 0
	for {
		caught, err := obs.caughtUp(ctx)
		alerts, byMsg := obs.snapshot()
		acks.mu.Lock()
		confirmed := maps.Clone(acks.done)
		acks.mu.Unlock()
		v = judge(alerts, byMsg, stats, confirmed, sys.box.all(), *window, time.Now())
		q, why := sys.quiet(ctx)
		if caught && err == nil && q && v.converged() && v.pending == 0 {
			calm++
		} else {
			calm = 0
		}
		if calm >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("not at rest after %v: observer caught up %v (%v), quiet %v (%s), %d unresolved, %d deadlines past due unfired, %d pending",
				wait, caught, err, q, why, len(v.unresolved), len(v.neverFired), v.pending)
			break
		}
		time.Sleep(3 * time.Second)
	}
	cancel()

	acks.mu.Lock()
	t.Logf("acknowledgements: %d planned, %d done, %d failed; call %s", len(acks.planned), len(acks.done), len(acks.failed), quantiles(acks.durations))
	for ref, err := range acks.failed {
		t.Logf("  acknowledgement of %s failed: %s", ref, err)
		break
	}
	acks.mu.Unlock()
	faults.mu.Lock()
	t.Logf("faults: %d replica kills %v; %d fault lines", sumKills(faults.kills), faults.kills, len(faults.lines))
	for _, l := range faults.lines {
		if !strings.Contains(l, "SIGKILL") || strings.Contains(l, "kafka") {
			t.Logf("  %s", l)
		}
	}
	faults.mu.Unlock()

	report := v.report(*window)
	t.Log("\n" + report)
	if *reportTo != "" {
		f, err := os.OpenFile(*reportTo, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			fmt.Fprintf(f, "## chaos run %s (load %v at %.0f/s, kill every ~%v, cluster %v, seed %d)\n\n```\n%s```\n\n", time.Now().UTC().Format(time.RFC3339), load, *rate, kill, cluster, s, report)
			_ = f.Close()
		}
	}

	// The invariants.
	if len(v.lost) > 0 {
		t.Errorf("%d alerts accepted by intake are not on the log", len(v.lost))
	}
	if n := len(v.unrouted) + len(v.unresolved); n > 0 {
		t.Errorf("%d alerts ended neither acknowledged nor fail-safe queued", n)
	}
	if v.duplicates > 0 {
		t.Errorf("%d duplicate messages per (alert, step, recipient)", v.duplicates)
	}
	if v.escalationsDecided > 0 {
		t.Errorf("%d escalations decided after an acknowledgement already in the log", v.escalationsDecided)
	}
	if v.sendsDecidedAfter > 0 {
		t.Errorf("%d sends decided after an acknowledgement already in the log", v.sendsDecidedAfter)
	}
	if v.sendsBeyondWindow > 0 {
		t.Errorf("%d messages with no NotificationAttempted begun more than %v after an acknowledgement already in the log", v.sendsBeyondWindow, *window)
	}
	if len(v.neverFired) > 0 {
		t.Errorf("%d deadlines never fired", len(v.neverFired))
	}
	if v.supersededExists && v.skipped != v.skippedExplained {
		t.Errorf("%d step messages skipped with no event saying why", v.skipped-v.skippedExplained)
	}
	if v.messages == 0 || v.accepted == 0 {
		t.Errorf("the run did nothing: %d accepted, %d messages", v.accepted, v.messages)
	}
}

func sumKills(m map[string]int) int {
	n := 0
	for _, k := range m {
		n += k
	}
	return n
}
