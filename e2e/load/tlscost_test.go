package load

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/e2e/harness"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

var (
	flagPairs          = flag.Int("load.pairs", 0, "BenchmarkTLSCost: pairs of runs (TLS everywhere, plaintext -insecure), alternating which goes first (0: skip it, as make bench does)")
	flagPairLatency    = flag.Duration("load.pair-latency", 30*time.Second, "BenchmarkTLSCost: length of each run's latency phase (at load.latency-rate)")
	flagPairRate       = flag.Float64("load.pair-rate", 300, "BenchmarkTLSCost: alerts/s offered in each run's throughput phase")
	flagPairThroughput = flag.Duration("load.pair-throughput", 15*time.Second, "BenchmarkTLSCost: length of each run's throughput phase (0: none)")
)

// armResult is one run of BenchmarkTLSCost.
type armResult struct {
	pair      int
	mode      string // "tls" or "plaintext"
	loadavg   string
	p50, p99  time.Duration // ACK to first email at the latency rate
	lost      int
	delivered float64 // first emails/s in the throughput phase
	accepted  float64 // alerts/s intake accepted in the throughput phase
}

// BenchmarkTLSCost measures what TLS everywhere costs (issue #19's target:
// at most 10% of throughput, at most +1 ms p99 ACK to first email at 100
// alerts/s). It runs pairs of systems in one process, one with mutual TLS
// on every gRPC hop, MLLP and FHIR (the default; sender bindings on) and
// one in the plaintext development mode (-insecure), alternating which
// goes first so that drift in the shared machine's load falls on both.
// Each run: warm-up, a latency phase at load.latency-rate for
// load.pair-latency, a throughput phase at load.pair-rate for
// load.pair-throughput. Kafka and Redis are the test infrastructure's
// plaintext listeners in both (their TLS is measured elsewhere).
//
//	go test -run '^$' -bench TLSCost -benchtime 1x -timeout 30m ./load/ -args -load.pairs 3
//
// It is skipped unless -load.pairs is set (make bench runs BenchmarkHerald).
func BenchmarkTLSCost(b *testing.B) {
	if *flagPairs < 1 {
		b.Skip("set -load.pairs N to run the TLS-cost pairs")
	}
	if b.N > 1 {
		b.Fatalf("run with -benchtime 1x (b.N=%d)", b.N)
	}
	bins := harness.Build(b, harness.Services...)
	var results []armResult
	for pair := range *flagPairs {
		modes := []string{"tls", "plaintext"}
		if pair%2 == 1 {
			slices.Reverse(modes)
		}
		for _, mode := range modes {
			b.Run(fmt.Sprintf("pair%d-%s", pair+1, mode), func(b *testing.B) {
				results = append(results, runArm(b, bins, pair+1, mode))
			})
		}
	}
	text := tlsCostMarkdown(results)
	b.Log("\n" + text)
	if path := *flagReport; path != "-" { // default: bench-tlscost.md at the repository root
		if path == "" {
			path = filepath.Join(harness.RepoRoot(b), "bench-tlscost.md")
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			b.Fatalf("write report: %v", err)
		}
	}
}

func runArm(b *testing.B, bins map[string]string, pair int, mode string) armResult {
	r := armResult{pair: pair, mode: mode, loadavg: loadavg()}
	s := startSystem(b, bins, systemConfig{partitions: *flagPartitions, timerStep: *flagTimerStep, conns: *flagConns,
		notificationWorkers: *flagWorkers, plaintext: mode == "plaintext", unsigned: mode == "unsigned", auditOff: mode == "unaudited"})
	ctx := b.Context()
	obs := observe(ctx, b, s.log)
	pids := map[string]int{}
	for n, p := range s.procs {
		pids[n] = p.pid()
	}
	delivered := func(id string, _ alertTrace) bool { _, ok := s.smtp.firstAt(refOf(id)); return ok }
	urgent := func(int) eventsv1.Category { return eventsv1.Category_CATEGORY_URGENT }
	if *flagWarmup > 0 {
		runPhase(ctx, b, s, obs, pids, "warmup", *flagLatencyRate, *flagWarmup, urgent, delivered)
	}
	lat := runPhase(ctx, b, s, obs, pids, "latency", *flagLatencyRate, *flagPairLatency, urgent, delivered)
	l := lat.latency()
	r.p50, r.p99 = pct(l, 50), pct(l, 99)
	r.lost = len(lat.accepted()) - lat.completed
	b.ReportMetric(ms1(r.p99), "p99-ms")
	if *flagPairThroughput > 0 {
		obs.setLazy(true)
		th := runPhase(ctx, b, s, obs, pids, "throughput", *flagPairRate, *flagPairThroughput, urgent, delivered)
		obs.setLazy(false)
		r.delivered, r.accepted = th.deliveredRate(), th.acceptedRate()
		r.lost += len(th.accepted()) - th.completed
		b.ReportMetric(r.delivered, "delivered/s")
	}
	return r
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// tlsCostMarkdown is the pairs' table and the medians of each mode.
func tlsCostMarkdown(rs []armResult) string {
	return costMarkdown(rs, "tls", "plaintext", "TLS everywhere", "Plaintext (-insecure)", "TLS − plaintext")
}

// costMarkdown is the pairs' table and the medians of modes a and b.
func costMarkdown(rs []armResult, a, b, titleA, titleB, diff string) string {
	var sb strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&sb, format+"\n", a...) }
	p("| Pair | Mode | Load average at start (1, 5, 15 min) | p50 ACK→first email (ms) | p99 ACK→first email (ms) | Throughput: first emails/s | Accepted/s | Lost |")
	p("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		p("| %d | %s | %s | %.1f | %.1f | %.0f | %.0f | %d |", r.pair, r.mode, r.loadavg, ms1(r.p50), ms1(r.p99), r.delivered, r.accepted, r.lost)
	}
	p("")
	med := func(mode string, f func(armResult) float64) float64 {
		var v []float64
		for _, r := range rs {
			if r.mode == mode {
				v = append(v, f(r))
			}
		}
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	p99 := func(r armResult) float64 { return ms1(r.p99) }
	p50 := func(r armResult) float64 { return ms1(r.p50) }
	thr := func(r armResult) float64 { return r.delivered }
	p("| Median of the pairs | %s | %s | %s |", titleA, titleB, diff)
	p("| --- | --- | --- | --- |")
	p("| p50 ACK→first email (ms) | %.1f | %.1f | %+.1f |", med(a, p50), med(b, p50), med(a, p50)-med(b, p50))
	p("| p99 ACK→first email (ms) | %.1f | %.1f | %+.1f |", med(a, p99), med(b, p99), med(a, p99)-med(b, p99))
	if pl := med(b, thr); pl > 0 {
		p("| Throughput (first emails/s) | %.0f | %.0f | %+.1f%% |", med(a, thr), pl, 100*(med(a, thr)-pl)/pl)
	}
	return sb.String()
}
