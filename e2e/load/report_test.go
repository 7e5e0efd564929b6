package load

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/status"
)

// report is the benchmark's Markdown report.
type report struct {
	env               env
	started, finished time.Time
	pids              map[string]int
	phases            []*phase
	events            map[string]int
	mails, unparsed   int
	// duplicateMails: messages at the SMTP sink that repeated a
	// Message-ID (one notification sent twice).
	duplicateMails int
	// idle use: before and after a quiet period of idleSpan.
	idleBefore, idleAfter map[string]usage
	idleSpan              time.Duration
}

// verdict is the benchmark's pass or fail: an error naming every alert
// lost (accepted by intake, not complete after the drain), every new
// report intake answered as a duplicate of another, and every message sent
// twice. Throughput and latency are measured, never judged here.
func (r *report) verdict() error {
	var errs []error
	for _, ph := range r.phases {
		acc := ph.accepted()
		if lost := len(acc) - ph.completed; lost > 0 {
			errs = append(errs, fmt.Errorf("phase %s: %d of %d accepted alerts lost (not complete after the drain of %s)", ph.name, lost, len(acc), *flagDrain))
		}
		dups := 0
		for _, s := range acc {
			if s.dup {
				dups++
			}
		}
		if dups > 0 {
			errs = append(errs, fmt.Errorf("phase %s: intake answered %d new reports as duplicates of others", ph.name, dups))
		}
	}
	if r.duplicateMails > 0 {
		errs = append(errs, fmt.Errorf("%d messages sent twice (a Message-ID repeated at the SMTP sink)", r.duplicateMails))
	}
	return errors.Join(errs...)
}

func (r *report) markdown() string {
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format+"\n", a...) }
	e := r.env
	p("# Herald load benchmark")
	p("")
	p("Run %s, took %s (`go test -run '^$' -bench Herald -benchtime 1x ./load` in e2e/).", r.started.UTC().Format("2006-01-02 15:04 MST"), r.finished.Sub(r.started).Round(time.Second))
	p("")
	p("## Machine and infrastructure")
	p("")
	p("| | |")
	p("|---|---|")
	p("| CPUs (nproc) | %d |", e.cpus)
	p("| CPU model | %s |", e.model)
	p("| Memory | %s |", e.memory)
	p("| Kernel | %s |", e.kernel)
	p("| Load average at start (1, 5, 15 min) | %s (the machine is shared) |", e.loadavg)
	p("| Go | %s |", e.goVersion)
	p("| Kafka | %s, one KRaft broker at %s (`make deps-up`) |", e.kafkaVersion, e.brokers)
	p("| Redis | %s at %s |", e.redisVersion, e.redisAddr)
	p("")
	p("## Set-up")
	p("")
	p("- The four services built from services/*/cmd/* and run as four processes (harness.Build), each with its own consumer group, on fresh topics (events topic with %d partitions, replication 1) and a private Redis database.", *flagPartitions)
	p("- Every Kafka write is synchronous with acks=all (platform/eventlog Writer); intake answers RaiseAlert only once AlertRaised is durable.")
	p("- Load: intake's gRPC RaiseAlert, open loop at a fixed offered rate, %d concurrent callers over %d connections; every alert is new (distinct accession).", *flagClients, *flagConns)
	p("- Policy (e2e/load/testdata/bundle.yaml): step 1 emails one person through an in-process go-smtp sink; URGENT alerts have a 1 h step timeout (nothing escalates), CRITICAL alerts (the timer phase, and %.0f%% of the throughput phase's) a %s one. Rate limits off (HERALD_RATE_LIMIT_MAX=0).", 100**flagTimerShare, *flagTimerStep)
	trace := "off (no OTLP export)"
	if *flagTrace {
		trace = "on, exported to an in-process OTLP/gRPC receiver"
	}
	workers := "32 (default)"
	if *flagWorkers > 0 {
		workers = fmt.Sprint(*flagWorkers)
	}
	p("- Service settings are the defaults except: notification workers %s, rate limits off, SMTP without STARTTLS; rules and acknowledgement untouched.", workers)
	p("- Services log JSON at info level; tracing %s; Prometheus endpoint off.", trace)
	if *flagWarmup > 0 {
		p("- Before the phases, an unreported %s warm-up at %.0f alerts/s, then %s idle to measure the idle cost.", *flagWarmup, *flagLatencyRate, "5 s")
	}
	p("- The latency is from RaiseAlert returning (intake's durable ACK) to the SMTP sink accepting the alert's first email (matched by the alert reference in the body). A lost alert is one accepted by intake whose first email did not arrive within the drain time (%s).", *flagDrain)
	p("")
	r.idleTable(&w)
	r.summary(&w)
	for _, ph := range r.phases {
		r.phase(&w, ph)
	}
	p("## Events on the log")
	p("")
	p("| Event type | Count |")
	p("|---|---:|")
	keys := make([]string, 0, len(r.events))
	for k := range r.events {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p("| %s | %d |", k, r.events[k])
	}
	p("")
	p("SMTP sink: %d messages accepted (%d without an alert reference); **%d sent twice** (a Message-ID repeated).", r.mails, r.unparsed, r.duplicateMails)
	if err := r.verdict(); err != nil {
		p("")
		p("**FAILED**: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return w.String()
}

func (r *report) phase(w *strings.Builder, ph *phase) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	acc := ph.accepted()
	errs := map[string]int{}
	dups, quar := 0, 0
	for _, s := range ph.samples {
		if s.err != nil {
			errs[status.Code(s.err).String()]++
		}
		if s.dup {
			dups++
		}
		if s.quar {
			quar++
		}
	}
	routed, sent := 0, 0
	var rpc, toRouted, routedToMail, routedSeen []time.Duration
	for _, s := range acc {
		rpc = append(rpc, s.acked.Sub(s.sent))
		a := ph.traces[s.id]
		if !a.routed.IsZero() {
			routed++
			if !a.raised.IsZero() {
				toRouted = append(toRouted, a.routed.Sub(a.raised))
			}
			routedSeen = append(routedSeen, a.routedSeen.Sub(a.routed))
			if at, ok := ph.mailAt[s.id]; ok {
				routedToMail = append(routedToMail, at.Sub(a.routed))
			}
		}
		if !a.firstSent.IsZero() {
			sent++
		}
	}
	offered := ph.dispatch.Sub(ph.start)
	p("## Phase %s: %.0f alerts/s offered for %s", ph.name, ph.rate, ph.duration)
	p("")
	p("| | |")
	p("|---|---:|")
	p("| Alerts offered | %d (handed to callers in %s: %.0f/s) |", len(ph.samples), offered.Round(time.Millisecond), float64(len(ph.samples))/offered.Seconds())
	p("| Load average (1, 5, 15 min) at start / end | %s / %s |", ph.load0, ph.load1)
	p("| Accepted by intake (durable) | %d (duplicates %d, quarantined %d) |", len(acc), dups, quar)
	if len(errs) > 0 {
		p("| RaiseAlert errors | %v |", errs)
	}
	p("| Reached AlertRouted | %d |", routed)
	p("| NotificationSent for step 1 | %d |", sent)
	p("| First email accepted by the SMTP sink | %d |", len(ph.mailAt))
	done := "first email"
	if ph.name == "timers" {
		done = "AlertEscalated from step 1"
	}
	if ph.name == "throughput" && *flagTimerShare > 0 {
		done = fmt.Sprintf("first email, and for the %.0f%% CRITICAL alerts AlertEscalated from step 1", 100**flagTimerShare)
	}
	p("| Complete (%s) | %d |", done, ph.completed)
	p("| **Lost** (accepted, not complete after the drain) | **%d**%s |", len(acc)-ph.completed, map[bool]string{true: " (drain timed out)", false: ""}[ph.drainTimedOut])
	p("| Accepted/s (over the offering) | %.0f |", ph.acceptedRate())
	p("| First emails/s (phase start to last first email) | %.0f |", ph.deliveredRate())
	p("| Drain after the offering | %s |", ph.end.Sub(ph.dispatch).Round(time.Millisecond))
	p("")
	p("| Latency | p50 | p90 | p99 | max | n |")
	p("|---|---:|---:|---:|---:|---:|")
	row := func(name string, ds []time.Duration) {
		if len(ds) == 0 {
			p("| %s | - | - | - | - | 0 |", name)
			return
		}
		p("| %s | %s | %s | %s | %s | %d |", name, fmtD(pct(ds, 50)), fmtD(pct(ds, 90)), fmtD(pct(ds, 99)), fmtD(pct(ds, 100)), len(ds))
	}
	if ph.name == "timers" {
		row("**Timer lateness**: AlertEscalated occurred_at minus step due", ph.lateness(false))
		row("Timer lateness as seen by a consumer of the log", ph.lateness(true))
	} else {
		row("**Intake durable ACK to first email at the SMTP sink**", ph.latency())
		if ph.name == "throughput" {
			row("the same, the CRITICAL share (served first when sending backs up)", ph.latencyOf(func(s sample) bool { return s.critical }))
			row("the same, the URGENT rest", ph.latencyOf(func(s sample) bool { return !s.critical }))
		}
		if l := ph.lateness(false); len(l) > 0 {
			row("Timer lateness under this load (the CRITICAL share): AlertEscalated occurred_at minus step due", l)
		}
	}
	row("RaiseAlert call (client side)", rpc)
	row("AlertRaised to AlertRouted (occurred_at)", toRouted)
	if ph.lazyObserver {
		p("| AlertRouted occurred_at to read by a plain consumer (append + fetch) | not measured: the observer reads lazily in this phase | | | | |")
	} else {
		row("AlertRouted occurred_at to read by a plain consumer (append + fetch)", routedSeen)
	}
	if ph.name != "timers" {
		row("AlertRouted occurred_at to first email at the sink", routedToMail)
	}
	p("")
	if l := ph.lateness(false); len(l) > 0 {
		over := 0
		for _, d := range l {
			if d > 100*time.Millisecond {
				over++
			}
		}
		p("Timers more than 100 ms late (occurred_at): %d of %d.", over, len(l))
		p("")
	}
	r.lagTable(w, ph)
	span := ph.end.Sub(ph.start) + time.Second
	busy, total := ph.busy1-ph.busy0, ph.total1-ph.total0
	p("Resource use over the phase (%s, offering and drain):", span.Round(time.Second))
	p("")
	p("| Process | CPU s | Cores used (avg) | CPU per accepted alert | RSS at end | Peak RSS (VmHWM, since start) |")
	p("|---|---:|---:|---:|---:|---:|")
	names := make([]string, 0, len(ph.after))
	for n := range ph.after {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		a, b := ph.after[n], ph.before[n]
		cpu := a.cpu - b.cpu
		p("| %s | %.1f | %.2f | %s | %s | %s |", n, cpu.Seconds(), cpu.Seconds()/span.Seconds(), perAlert(cpu, len(acc)), fmtKiB(a.rssKiB), fmtKiB(a.hwmKiB))
	}
	var ours time.Duration
	for _, n := range names {
		ours += ph.after[n].cpu - ph.before[n].cpu
	}
	if total > 0 {
		others := max(busy-ours, 0) // the two clocks differ slightly; never below zero
		p("| other processes on the machine (other engineers' work) | %.1f | %.2f | | | |", others.Seconds(), others.Seconds()/span.Seconds())
		p("| whole machine (every process, other users included) | %.1f | %.2f of %d | | | |", busy.Seconds(), busy.Seconds()/span.Seconds(), r.env.cpus)
	}
	p("")
	for n := range ph.before {
		if _, ok := ph.after[n]; ok {
			continue
		}
		p("Note: %s ended during the phase (restarted by someone else on the shared machine?); its use is not shown and the phase's figures are suspect.", n)
		p("")
	}
	if ph.name != "timers" && len(acc) > 0 {
		herald := ph.heraldCPU()
		p("Herald's four services together used %.0f µs of CPU per accepted alert.", float64(herald.Microseconds())/float64(len(acc)))
		p("")
		p("Counts per accepted alert (from /proc; a voluntary context switch is a thread that blocked: a goroutine wake-up that needed an OS thread, a network wait; each Kafka request, Redis pipeline, gRPC frame batch or SMTP command is at least one write system call):")
		p("")
		p("| Service | Voluntary context switches | Involuntary | Write syscalls | Read syscalls |")
		p("|---|---:|---:|---:|---:|")
		n := float64(len(acc))
		for _, s := range heraldServices {
			a, b := ph.after[s], ph.before[s]
			p("| %s | %.1f | %.1f | %.1f | %.1f |", s, float64(a.volCS-b.volCS)/n, float64(a.involCS-b.involCS)/n, float64(a.syscw-b.syscw)/n, float64(a.syscr-b.syscr)/n)
		}
		if len(ph.allocs1) > 0 {
			p("")
			p("Heap allocations per accepted alert (runtime.MemStats, through each service's pprof address):")
			p("")
			p("| Service | Objects | Bytes |")
			p("|---|---:|---:|")
			for _, s := range heraldServices {
				a, ok1 := ph.allocs1[s]
				b, ok0 := ph.allocs0[s]
				if ok0 && ok1 {
					p("| %s | %.0f | %.0f |", s, float64(a.objects-b.objects)/n, float64(a.bytes-b.bytes)/n)
				}
			}
		}
		if ph.redisCmds1 > ph.redisCmds0 {
			p("")
			p("Redis commands per accepted alert (the whole server, the harness's once-a-second lag probe included): %.1f.", float64(ph.redisCmds1-ph.redisCmds0)/n)
		}
		p("")
	}
}

func fmtD(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtD(-d)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	case d < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000)
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

func fmtKiB(k int64) string {
	if k == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(k)/1024)
}

// lagTable shows each consumer group's lag (records of the events topic
// not yet handled and committed) over the phase.
func (r *report) lagTable(w *strings.Builder, ph *phase) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	if len(ph.lag) == 0 {
		return
	}
	svcs := []string{"rules", "acknowledgement", "notification"}
	peak := map[string]int64{}
	var atOffer lagSample
	for _, s := range ph.lag {
		for _, n := range svcs {
			peak[n] = max(peak[n], s.lag[n])
		}
		if !s.at.After(ph.dispatch) {
			atOffer = s
		}
	}
	p("Consumer lag on the events topic (records not yet handled), sampled every second:")
	p("")
	p("| Group | Peak | When the offering ended |")
	p("|---|---:|---:|")
	for _, n := range svcs {
		p("| %s | %d | %d |", n, peak[n], atOffer.lag[n])
	}
	p("")
	// A coarse timeline: about ten rows.
	step := max(1, len(ph.lag)/10)
	p("| t | rules lag | acknowledgement lag | notification lag | notification jobs scheduled (ready) |")
	p("|---:|---:|---:|---:|---:|")
	for i := 0; i < len(ph.lag); i += step {
		s := ph.lag[i]
		p("| %s | %d | %d | %d | %d (%d) |", s.at.Sub(ph.start).Round(time.Second), s.lag["rules"], s.lag["acknowledgement"], s.lag["notification"], s.jobs, s.ready)
	}
	p("")
}

func perAlert(cpu time.Duration, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f µs", float64(cpu.Microseconds())/float64(n))
}

// summary is one line per phase: the CPU per alert of each service, the
// latency, and the machine's load beside them.
func (r *report) summary(w *strings.Builder) {
	if len(r.phases) == 0 {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("## Summary")
	p("")
	p("CPU per accepted alert (user+system time of each service process from /proc over the phase, offering and drain, divided by the alerts accepted), with the machine's load average (1 min) at the phase's start and end:")
	p("")
	p("| Phase | Offered/s | Accepted | Lost | Load avg start → end | intake | rules | acknowledgement | notification | **four services** | ACK → first email p50 / p99 | First emails/s |")
	p("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, ph := range r.phases {
		acc := ph.accepted()
		cells := make([]string, 0, len(heraldServices))
		for _, n := range heraldServices {
			cells = append(cells, perAlert(ph.after[n].cpu-ph.before[n].cpu, len(acc)))
		}
		lat := ph.latency()
		p("| %s | %.0f | %d | %d | %s → %s | %s | **%s** | %s / %s | %.0f |", ph.name, ph.rate, len(acc), len(acc)-ph.completed,
			firstField(ph.load0), firstField(ph.load1), strings.Join(cells, " | "), perAlert(ph.heraldCPU(), len(acc)),
			fmtD(pct(lat, 50)), fmtD(pct(lat, 99)), ph.deliveredRate())
	}
	p("")
}

func firstField(s string) string {
	f, _, _ := strings.Cut(s, " ")
	return f
}

// idleTable shows what the processes use with no load at all.
func (r *report) idleTable(w *strings.Builder) {
	if r.idleBefore == nil {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("## Idle (no load, %s)", r.idleSpan.Round(time.Second))
	p("")
	p("| Process | Cores used (avg) | RSS |")
	p("|---|---:|---:|")
	names := make([]string, 0, len(r.idleAfter))
	for n := range r.idleAfter {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		cpu := r.idleAfter[n].cpu - r.idleBefore[n].cpu
		p("| %s | %.3f | %s |", n, cpu.Seconds()/r.idleSpan.Seconds(), fmtKiB(r.idleAfter[n].rssKiB))
	}
	p("")
}
