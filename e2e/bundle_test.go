package e2e

import (
	"os"
	"testing"

	"github.com/herald-health/herald/e2e/harness"
)

// start runs Herald with the e2e trust's bundle.
func start(t *testing.T) *harness.System {
	t.Helper()
	b, err := os.ReadFile("testdata/bundle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return harness.StartSystem(t, bins, []harness.Bundle{{Tenant: "RZZ", YAML: string(b)}})
}
