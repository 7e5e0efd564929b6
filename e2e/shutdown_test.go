package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-health/herald/e2e/harness"
)

// Every service logs that it was asked to stop (with the signal) and that it
// stopped, so an operator reading the logs can tell a clean stop from a
// crash.
func TestEveryServiceLogsItsShutdown(t *testing.T) {
	sys := start(t)
	for _, name := range harness.Services {
		p := sys.Procs[name]
		p.Stop()
		var stopping, stopped bool
		for _, line := range strings.Split(string(p.Logs()), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			switch rec["msg"] {
			case name + " stopping":
				stopping = rec["signal"] == "terminated"
			case name + " stopped":
				stopped = rec["level"] == "INFO"
			}
		}
		if !stopping || !stopped {
			t.Errorf("%s logged stopping (signal terminated): %v, stopped: %v; logs:\n%s", name, stopping, stopped, tailOf(p.Logs(), 2000))
		}
	}
}

func tailOf(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
