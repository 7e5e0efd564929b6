package load

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/herald-health/herald/e2e/harness"
)

var flagAuditPairs = flag.Int("load.audit-pairs", 0, "BenchmarkAuditCost: pairs of runs (audit trail on, off), alternating which goes first (0: skip it, as make bench does)")

// BenchmarkAuditCost measures what the audit trail costs end to end (issue
// #20's target: audit hashing and event signing keep end-to-end
// throughput within 10% of today's): pairs of systems in one process, one
// with acknowledgement's auditor running (its forward group reads every
// event of the log, and every command is chained per trust), one with it
// off (setting audit-off, development profile only), alternating which
// goes first so that drift in the shared machine's load falls on both.
// Each run is BenchmarkTLSCost's (warm-up, latency phase, throughput
// phase), mutual TLS on every hop and events signed in both. The load
// raises alerts and nobody acknowledges them, so what is measured is the
// forward group's reading of the log (BenchmarkChainer, in
// services/acknowledgement/internal/auditor, measures the chaining of
// commands).
//
//	go test -run '^$' -bench AuditCost -benchtime 1x -timeout 30m ./load/ -args -load.audit-pairs 2
func BenchmarkAuditCost(b *testing.B) {
	if *flagAuditPairs < 1 {
		b.Skip("set -load.audit-pairs N to run the audit-cost pairs")
	}
	if b.N > 1 {
		b.Fatalf("run with -benchtime 1x (b.N=%d)", b.N)
	}
	bins := harness.Build(b, harness.Services...)
	var results []armResult
	for pair := range *flagAuditPairs {
		modes := []string{"audited", "unaudited"}
		if pair%2 == 1 {
			slices.Reverse(modes)
		}
		for _, mode := range modes {
			b.Run(fmt.Sprintf("pair%d-%s", pair+1, mode), func(b *testing.B) {
				results = append(results, runArm(b, bins, pair+1, mode))
			})
		}
	}
	text := costMarkdown(results, "audited", "unaudited", "Audit trail on", "Audit trail off", "on − off")
	b.Log("\n" + text)
	if path := *flagReport; path != "-" {
		if path == "" {
			path = filepath.Join(harness.RepoRoot(b), "bench-auditcost.md")
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			b.Fatalf("write report: %v", err)
		}
	}
}
