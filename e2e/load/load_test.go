package load

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/e2e/harness"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
)

var (
	flagRate            = flag.Float64("load.rate", 1000, "alerts/s offered in the throughput phase")
	flagDuration        = flag.Duration("load.duration", 60*time.Second, "length of the throughput phase (the target: 1,000 alerts/s for 60 s)")
	flagLatencyRate     = flag.Float64("load.latency-rate", 100, "alerts/s offered in the latency phase")
	flagLatencyDuration = flag.Duration("load.latency-duration", 10*time.Second, "length of the latency phase")
	flagTimerRate       = flag.Float64("load.timer-rate", 50, "alerts/s offered in the timer phase")
	flagTimerDuration   = flag.Duration("load.timer-duration", 10*time.Second, "length of the timer phase")
	flagTimerStep       = flag.Duration("load.timer-step", 3*time.Second, "step-1 timeout of the timer phase's alerts")
	flagClients         = flag.Int("load.clients", 200, "concurrent RaiseAlert callers")
	flagConns           = flag.Int("load.conns", 4, "gRPC connections to intake the callers share")
	flagPartitions      = flag.Int("load.partitions", 12, "partitions of the events topic (12 is eventlog's default)")
	flagDrain           = flag.Duration("load.drain", 90*time.Second, "longest wait after a phase for its alerts to complete")
	flagPhases          = flag.String("load.phases", "latency,timers,cpu,throughput", "phases to run, in order (latency, timers, cpu, throughput)")
	flagCPURates        = flag.String("load.cpu-rates", "30,100,300,1000", "offered rates of the cpu phase: one URGENT-only sub-phase per rate, for the CPU per alert at each")
	flagCPUDuration     = flag.Duration("load.cpu-duration", 20*time.Second, "length of each of the cpu phase's sub-phases")
	flagReport          = flag.String("load.report", "", "report file (default <repo>/bench-report.md; - for none)")
	flagTimerShare      = flag.Float64("load.timer-share", 0.05, "share of the throughput phase's alerts that are CRITICAL with the timer phase's short step (timer lateness under load)")
	flagWarmup          = flag.Duration("load.warmup", 3*time.Second, "unreported warm-up at the latency phase's rate before the phases (0: none)")
	flagWorkers         = flag.Int("load.notification-workers", 0, "notification --workers (0: the service's default, 32)")
	flagTrace           = flag.Bool("load.trace", false, "export the services' spans to an in-process OTLP receiver (off: no trace export)")
	flagProfile         = flag.String("load.pprof", "", "directory for CPU profiles of each service, taken during the throughput phase and each cpu sub-phase, in <dir>/<phase>/<service>.pprof (empty: none)")
)

// BenchmarkHerald runs the four services as processes against the real
// Kafka and Redis and measures, in phases on one system: the latency from
// intake's durable ACK to the first email at a steady rate, the lateness of
// step timers, and the sustained rate with nothing lost. See the package
// documentation for how to run it; durations come from the -load.* flags.
func BenchmarkHerald(b *testing.B) {
	if b.N > 1 {
		b.Fatalf("run with -benchtime 1x: each phase's length is set by the -load.* flags (b.N=%d)", b.N)
	}
	started := time.Now()
	env := describeEnv(b)
	bins := harness.Build(b, harness.Services...)
	s := startSystem(b, bins, systemConfig{partitions: *flagPartitions, timerStep: *flagTimerStep, conns: *flagConns, trace: *flagTrace, notificationWorkers: *flagWorkers, profile: *flagProfile != ""})
	ctx := b.Context()
	obs := observe(ctx, b, s.log)
	r := &report{env: env, started: started}
	r.pids = map[string]int{}
	for n, p := range s.procs {
		r.pids[n] = p.pid()
	}
	r.pids["kafka"] = env.kafkaPid
	r.pids["redis"] = env.redisPid
	r.pids["benchmark (load generator, sinks)"] = os.Getpid()

	delivered := func(id string, _ alertTrace) bool { _, ok := s.smtp.firstAt(refOf(id)); return ok }
	escalated := func(_ string, a alertTrace) bool { return !a.escalated.IsZero() }
	urgent := func(int) eventsv1.Category { return eventsv1.Category_CATEGORY_URGENT }
	critical := func(int) eventsv1.Category { return eventsv1.Category_CATEGORY_CRITICAL }
	// The throughput phase mixes in CRITICAL alerts (short step timeout) to
	// measure timer lateness under load; such an alert is complete once it
	// has its first email and has escalated.
	every := 0
	if *flagTimerShare > 0 {
		every = max(1, int(1 / *flagTimerShare + 0.5))
	}
	mixed := func(i int) eventsv1.Category {
		if every > 0 && i%every == 0 {
			return eventsv1.Category_CATEGORY_CRITICAL
		}
		return eventsv1.Category_CATEGORY_URGENT
	}
	deliveredAndDue := func(id string, a alertTrace) bool {
		if !delivered(id, a) {
			return false
		}
		short := !a.routed.IsZero() && a.stepDue.Sub(a.routed) < time.Hour
		return !short || !a.escalated.IsZero()
	}
	// Warm up (connections, consumer fetch sessions, the runtime), unreported.
	if *flagWarmup > 0 {
		runPhase(ctx, b, s, obs, r.pids, "warmup", *flagLatencyRate, *flagWarmup, urgent, delivered)
	}
	// Idle cost: the services are up and have nothing to do.
	r.idleBefore = snapshot(r.pids)
	idleStart := time.Now()
	time.Sleep(5 * time.Second)
	r.idleAfter, r.idleSpan = snapshot(r.pids), time.Since(idleStart)

	run := func(name string, rate float64, dur time.Duration, cat func(int) eventsv1.Category, done func(string, alertTrace) bool) *phase {
		var ph *phase
		b.Run(name, func(b *testing.B) {
			if b.N > 1 {
				b.Fatalf("run with -benchtime 1x (b.N=%d)", b.N)
			}
			ph = runPhase(ctx, b, s, obs, r.pids, name, rate, dur, cat, done)
			for _, m := range ph.metrics() {
				b.ReportMetric(m.value, m.unit)
			}
		})
		if ph != nil {
			r.phases = append(r.phases, ph)
		}
		return ph
	}
	for _, name := range strings.Split(*flagPhases, ",") {
		switch strings.TrimSpace(name) {
		case "latency":
			run("latency", *flagLatencyRate, *flagLatencyDuration, urgent, delivered)
		case "timers":
			run("timers", *flagTimerRate, *flagTimerDuration, critical, escalated)
		case "cpu":
			// CPU per alert at each rate, URGENT only (nothing escalates).
			// Above 100/s the observer reads lazily, as in the throughput
			// phase, so its fetches do not load the broker.
			for _, f := range strings.Split(*flagCPURates, ",") {
				rate, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
				if err != nil || rate <= 0 {
					b.Fatalf("flag load.cpu-rates: %q is not a positive rate", f)
				}
				obs.setLazy(rate > 100)
				if ph := run(fmt.Sprintf("cpu-%g", rate), rate, *flagCPUDuration, urgent, delivered); ph != nil {
					ph.lazyObserver = rate > 100
				}
				obs.setLazy(false)
			}
		case "throughput":
			// The observer's fetches are the measurement's, not the system's:
			// at this load it reads lazily (observer.setLazy).
			obs.setLazy(true)
			if ph := run("throughput", *flagRate, *flagDuration, mixed, deliveredAndDue); ph != nil {
				ph.lazyObserver = true
			}
			obs.setLazy(false)
		case "":
		default:
			b.Fatalf("flag load.phases: unknown phase %q (latency, timers, cpu, throughput)", name)
		}
	}
	for n, p := range s.procs {
		if p.exited() {
			b.Errorf("%s exited during the run; output tail:\n%s", n, p.out.String())
		}
	}
	r.events = obs.typeCounts()
	r.mails, _, r.unparsed = s.smtp.counts()
	r.duplicateMails = s.smtp.duplicates()
	r.finished = time.Now()
	text := r.markdown()
	b.Log("\n" + text)
	path := *flagReport
	if path == "" {
		path = filepath.Join(harness.RepoRoot(b), "bench-report.md")
	}
	if path != "-" {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			b.Fatalf("write report: %v", err)
		}
		b.Logf("report written to %s", path)
	}
	// make bench fails (exit status 1) when anything was lost or sent
	// twice, whatever the figures.
	if err := r.verdict(); err != nil {
		b.Fatalf("Herald lost or duplicated alerts:\n%v", err)
	}
}

// sample is one RaiseAlert call.
type sample struct {
	id          string
	sent, acked time.Time
	err         error
	dup, quar   bool
	critical    bool // raised in the CRITICAL category
}

// phase is one phase's raw results and resource use.
type phase struct {
	name            string
	rate            float64
	duration        time.Duration
	samples         []sample
	start, dispatch time.Time // first call due; last call handed to a caller
	end             time.Time // drain finished
	completed       int
	traces          map[string]alertTrace
	mailAt          map[string]time.Time
	before, after   map[string]usage
	busy0, total0   time.Duration
	busy1, total1   time.Duration
	// redisCmds0/1 are Redis's total_commands_processed before and after
	// (the whole server: the harness's lag sampler adds one a second).
	redisCmds0, redisCmds1 int64
	// load0 and load1 are the machine's load averages at the phase's
	// start and end (the machine is shared: every figure needs them).
	load0, load1 string
	// allocs0/1 are each service's heap allocations before and after
	// (only with -load.pprof, which gives the services a pprof address).
	allocs0, allocs1 map[string]allocs
	drainTimedOut    bool
	lag              []lagSample
	// lazyObserver: the observer read lazily, so its "when read" times say
	// nothing about the system.
	lazyObserver bool
}

func runPhase(ctx context.Context, b *testing.B, s *system, obs *observer, pids map[string]int, name string, rate float64, dur time.Duration,
	cat func(int) eventsv1.Category, done func(string, alertTrace) bool) *phase {
	n := int(rate * dur.Seconds())
	if n < 1 {
		b.Fatalf("phase %s: rate %v for %v offers no alert", name, rate, dur)
	}
	ph := &phase{name: name, rate: rate, duration: dur, samples: make([]sample, n)}
	ph.before = snapshot(pids)
	ph.busy0, ph.total0 = machineBusy()
	ph.redisCmds0 = redisCommands(ctx, s)
	ph.load0 = loadavg()
	ph.allocs0 = readAllocs(ctx, s.pprof)
	run := testinfra.UniqueName(name)
	jobs := make(chan int)
	var wg sync.WaitGroup
	var next atomic.Uint64
	for range max(1, *flagClients) {
		c := s.intake[int(next.Add(1))%len(s.intake)]
		wg.Go(func() {
			for i := range jobs {
				req := &intakev1.RaiseAlertRequest{Report: flaggedReport(run, i, cat(i))}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				sent := time.Now()
				resp, err := c.RaiseAlert(cctx, req)
				acked := time.Now()
				cancel()
				smp := sample{sent: sent, acked: acked, err: err, critical: cat(i) == eventsv1.Category_CATEGORY_CRITICAL}
				if err == nil {
					smp.id, smp.dup, smp.quar = resp.GetAlertId(), resp.GetDuplicate(), resp.GetQuarantined()
				}
				ph.samples[i] = smp
			}
		})
	}
	lag := sampleLag(ctx, s.log, s.groups, s.redis, s.notificationDue, time.Second)
	if *flagProfile != "" && (name == "throughput" || strings.HasPrefix(name, "cpu-")) {
		profiles := profileServices(ctx, b, s.pprof, filepath.Join(*flagProfile, name), dur)
		defer profiles.Wait()
	}
	ph.start = time.Now()
	for i := range n {
		due := ph.start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		}
	}
	ph.dispatch = time.Now()
	close(jobs)
	wg.Wait()

	// Drain: wait until every accepted alert is complete or the drain
	// time passes.
	deadline := time.Now().Add(*flagDrain)
	pending := map[string]bool{}
	for _, smp := range ph.samples {
		if smp.err == nil {
			pending[smp.id] = true
		}
	}
	for len(pending) > 0 {
		for id := range pending {
			if a, ok := obs.get(id); ok && done(id, a) {
				delete(pending, id)
			} else if !ok && done(id, alertTrace{}) {
				delete(pending, id)
			}
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			ph.drainTimedOut = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	ph.end = time.Now()
	ph.lag = lag.finish()
	// Give the observer a moment to read the events appended with the last
	// messages (NotificationSent follows the SMTP sink's acceptance).
	time.Sleep(time.Second)
	ph.after = snapshot(pids)
	ph.busy1, ph.total1 = machineBusy()
	ph.redisCmds1 = redisCommands(ctx, s)
	ph.load1 = loadavg()
	ph.allocs1 = readAllocs(ctx, s.pprof)
	ph.traces = map[string]alertTrace{}
	ph.mailAt = map[string]time.Time{}
	for _, smp := range ph.samples {
		if smp.err != nil {
			continue
		}
		a, _ := obs.get(smp.id)
		ph.traces[smp.id] = a
		if at, ok := s.smtp.firstAt(refOf(smp.id)); ok {
			ph.mailAt[smp.id] = at
		}
		if done(smp.id, a) {
			ph.completed++
		}
	}
	return ph
}

// redisCommands is the Redis server's total_commands_processed (0 when it
// cannot be read).
func redisCommands(ctx context.Context, s *system) int64 {
	info, err := s.redis.Info(ctx, "stats").Result()
	if err != nil {
		return 0
	}
	if m := regexp.MustCompile(`total_commands_processed:(\d+)`).FindStringSubmatch(info); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n
	}
	return 0
}

func snapshot(pids map[string]int) map[string]usage {
	out := map[string]usage{}
	for n, pid := range pids {
		if pid == 0 {
			continue
		}
		if u, err := readUsage(pid); err == nil {
			out[n] = u
		}
	}
	return out
}

// flaggedReport builds a synthetic flagged report; each (run, i) is a new alert.
func flaggedReport(run string, i int, cat eventsv1.Category) *intakev1.Report {
	return &intakev1.Report{
		Tenant:          "RZZ",
		SourceSystem:    "load",
		SourceMessageId: fmt.Sprintf("%s-%d", run, i),
		Accession:       fmt.Sprintf("ACC-%s-%d", run, i),
		Patient:         &eventsv1.Patient{NhsNumber: "999 000 0018"},
		Referrer:        &eventsv1.Clinician{Id: "C1234567"},
		SourceFlag:      &eventsv1.SourceFlag{Category: cat},
		ReportText:      "CT head: synthetic load-test report. " + strings.Repeat("No patient data. ", 16),
	}
}

type metric struct {
	value float64
	unit  string
}

func (ph *phase) accepted() []sample {
	var out []sample
	for _, s := range ph.samples {
		if s.err == nil {
			out = append(out, s)
		}
	}
	return out
}

// metrics are the figures go test prints on the benchmark's line.
func (ph *phase) metrics() []metric {
	acc := ph.accepted()
	ms := []metric{{float64(len(acc)), "accepted"}, {float64(len(acc) - ph.completed), "lost"}}
	if len(acc) > 0 {
		ms = append(ms, metric{float64(ph.heraldCPU().Microseconds()) / float64(len(acc)), "cpu-µs/alert"})
	}
	switch ph.name {
	case "timers":
		l := ph.lateness(false)
		ms = append(ms, metric{ms1(pct(l, 50)), "p50-late-ms"}, metric{ms1(pct(l, 99)), "p99-late-ms"})
	default:
		l := ph.latency()
		ms = append(ms, metric{ms1(pct(l, 50)), "p50-ms"}, metric{ms1(pct(l, 99)), "p99-ms"},
			metric{ph.acceptedRate(), "accepted/s"}, metric{ph.deliveredRate(), "delivered/s"})
		if l := ph.lateness(false); len(l) > 0 {
			ms = append(ms, metric{ms1(pct(l, 99)), "p99-timer-late-ms"})
		}
	}
	return ms
}

// heraldServices are the four services whose CPU is Herald's cost.
var heraldServices = []string{"intake", "rules", "acknowledgement", "notification"}

// heraldCPU is the CPU the four services used over the phase.
func (ph *phase) heraldCPU() time.Duration {
	var d time.Duration
	for _, n := range heraldServices {
		d += ph.after[n].cpu - ph.before[n].cpu
	}
	return d
}

// latency is intake's ACK to the first message at the SMTP sink.
func (ph *phase) latency() []time.Duration { return ph.latencyOf(func(sample) bool { return true }) }

// latencyOf is latency over the accepted alerts that keep says.
func (ph *phase) latencyOf(keep func(sample) bool) []time.Duration {
	var out []time.Duration
	for _, s := range ph.accepted() {
		if !keep(s) {
			continue
		}
		if at, ok := ph.mailAt[s.id]; ok {
			out = append(out, at.Sub(s.acked))
		}
	}
	return out
}

// lateness is AlertEscalated (occurred_at, or when the observer read it)
// minus the step's due time.
func (ph *phase) lateness(seen bool) []time.Duration {
	var out []time.Duration
	for _, s := range ph.accepted() {
		a := ph.traces[s.id]
		if a.escalated.IsZero() || a.stepDue.IsZero() {
			continue
		}
		at := a.escalated
		if seen {
			at = a.escalateSeen
		}
		out = append(out, at.Sub(a.stepDue))
	}
	return out
}

// acceptedRate is alerts accepted per second of offering.
func (ph *phase) acceptedRate() float64 {
	acc := ph.accepted()
	if len(acc) == 0 {
		return 0
	}
	last := ph.start
	for _, s := range acc {
		if s.acked.After(last) {
			last = s.acked
		}
	}
	return float64(len(acc)) / last.Sub(ph.start).Seconds()
}

// deliveredRate is first messages per second from the phase's start to its
// last first message.
func (ph *phase) deliveredRate() float64 {
	if len(ph.mailAt) == 0 {
		return 0
	}
	last := ph.start
	for _, at := range ph.mailAt {
		if at.After(last) {
			last = at
		}
	}
	return float64(len(ph.mailAt)) / last.Sub(ph.start).Seconds()
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms1(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// env is the machine and infrastructure the benchmark ran on.
type env struct {
	machine
	goVersion, kafkaVersion, redisVersion string
	kafkaPid, redisPid                    int
	brokers, redisAddr                    string
}

func describeEnv(b *testing.B) env {
	e := env{machine: describeMachine(), goVersion: runtime.Version()}
	e.brokers = strings.Join(testinfra.KafkaBrokers(b), ",")
	e.redisAddr = testinfra.RedisAddr(b)
	rdb := testinfra.NewRedis(b)
	if info, err := rdb.Info(b.Context(), "server").Result(); err == nil {
		if m := regexp.MustCompile(`redis_version:(\S+)`).FindStringSubmatch(info); m != nil {
			e.redisVersion = m[1]
		}
	}
	_, port, _ := strings.Cut(e.redisAddr, ":")
	e.redisPid = findProcess("redis-server", ":"+port)
	// Several brokers may run on a shared machine (one per engineer): the
	// one this run uses is the one whose configuration lives in the deps
	// directory (make deps-up).
	deps := os.Getenv("HERALD_DEPS_DIR")
	if deps == "" {
		deps = filepath.Join(harness.RepoRoot(b), ".deps")
	}
	if e.kafkaPid = findProcess("kafka.Kafka", filepath.Join(deps, "kafka")+"/"); e.kafkaPid == 0 {
		e.kafkaPid = findProcess("kafka.Kafka")
	}
	if e.kafkaPid != 0 {
		cl := cmdline(e.kafkaPid)
		for _, re := range []string{`kafka_2\.1[0-9]-([0-9][0-9.]*[0-9])`, `/lib/([0-9]+\.[0-9]+\.[0-9]+)/`, `kafka-server-([0-9][0-9.]*[0-9])`} {
			if m := regexp.MustCompile(re).FindStringSubmatch(cl); m != nil {
				e.kafkaVersion = m[1]
				break
			}
		}
	}
	if e.kafkaVersion == "" {
		e.kafkaVersion = "unknown"
	}
	return e
}
