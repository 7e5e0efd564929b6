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

var flagSignPairs = flag.Int("load.sign-pairs", 0, "BenchmarkSigningCost: pairs of runs (events signed and verified, unsigned), alternating which goes first (0: skip it, as make bench does)")

// BenchmarkSigningCost measures what event signing costs (issue #20 item
// 7's target: end-to-end throughput within 10% of unsigned): pairs of
// systems in one process, one where every service signs each record it
// appends and verifies each record it reads (Ed25519, platform/eventsign:
// the default, as in production) and one without keys, alternating which
// goes first so that drift in the shared machine's load falls on both.
// Each run is BenchmarkTLSCost's (warm-up, latency phase at
// load.latency-rate for load.pair-latency, throughput phase at
// load.pair-rate for load.pair-throughput), mutual TLS on every hop in
// both.
//
//	go test -run '^$' -bench SigningCost -benchtime 1x -timeout 30m ./load/ -args -load.sign-pairs 2
func BenchmarkSigningCost(b *testing.B) {
	if *flagSignPairs < 1 {
		b.Skip("set -load.sign-pairs N to run the signing-cost pairs")
	}
	if b.N > 1 {
		b.Fatalf("run with -benchtime 1x (b.N=%d)", b.N)
	}
	bins := harness.Build(b, harness.Services...)
	var results []armResult
	for pair := range *flagSignPairs {
		modes := []string{"signed", "unsigned"}
		if pair%2 == 1 {
			slices.Reverse(modes)
		}
		for _, mode := range modes {
			b.Run(fmt.Sprintf("pair%d-%s", pair+1, mode), func(b *testing.B) {
				results = append(results, runArm(b, bins, pair+1, mode))
			})
		}
	}
	text := costMarkdown(results, "signed", "unsigned", "Signed and verified", "Unsigned", "signed − unsigned")
	b.Log("\n" + text)
	if path := *flagReport; path != "-" {
		if path == "" {
			path = filepath.Join(harness.RepoRoot(b), "bench-signcost.md")
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			b.Fatalf("write report: %v", err)
		}
	}
}
