package allinone

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/herald-health/herald/services/rules"
)

func TestSpeedUpDividesTimeoutsAndClocksOnly(t *testing.T) {
	src := fstest.MapFS{"RZZ/policies.yaml": {Data: []byte(`
version: "2026.1"
categories:
  - code: CRITICAL
    clocks: {communicate: 1h, acknowledge: 2d}
policies:
  - id: critical
    steps:
      - timeout: 10m
        repeats: 1
        channels: [sms]
`)}}
	dir := t.TempDir()
	if err := writeFastBundles(src, dir, 60); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "RZZ/policies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"communicate: 1m0s", "acknowledge: 48m0s", "timeout: 10s", "repeats: 1", `version: "2026.1-x60"`} {
		if !strings.Contains(got, want) {
			t.Errorf("rewritten bundle lacks %q:\n%s", want, got)
		}
	}
}

func TestDemoBundlesSpeedUpCleanly(t *testing.T) {
	if err := writeFastBundles(rules.DemoBundles(), t.TempDir(), 60); err != nil {
		t.Fatalf("demo bundles: %v", err)
	}
}
