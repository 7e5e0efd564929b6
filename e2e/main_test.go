package e2e

import (
	"os"
	"testing"

	"github.com/herald-health/herald/e2e/harness"
)

// bins holds the service binaries, built once for the whole suite.
var bins map[string]string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "herald-e2e-bin")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	bins, err = harness.BuildInto(dir, append([]string{"heraldctl"}, harness.Services...)...)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	return m.Run()
}
