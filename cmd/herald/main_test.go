package main

import (
	"bytes"
	"strings"
	"testing"
)

// The all-in-one composes four services under one shell: every setting is
// bound once (a second binding of log-level or otlp-endpoint would panic
// here), the shell's settings sit beside the all-in-one's own, and a bad
// setting exits 2 naming it, before anything starts.
func TestTheAllInOneRunsUnderTheServiceShell(t *testing.T) {
	var help bytes.Buffer
	if code := run([]string{"-h"}, &help); code != 0 {
		t.Fatalf("-h: exit %d, want 0: %s", code, help.String())
	}
	for _, name := range []string{"-log-level", "-otlp-endpoint", "-otlp-tls-ca", "-metrics-addr", "-pprof-addr", "-speedup", "-work-dir", "-insecure"} {
		if !strings.Contains(help.String(), name+" ") && !strings.Contains(help.String(), name+"\n") {
			t.Errorf("-h does not list %s:\n%s", name, help.String())
		}
	}
	for _, c := range []struct{ arg, names string }{
		{"-log-level=loud", "log-level"},
		{"-speedup=0", "speedup"},
	} {
		var stderr bytes.Buffer
		if code := run([]string{c.arg}, &stderr); code != 2 || !strings.Contains(stderr.String(), c.names) {
			t.Errorf("%s: exit %d %q, want 2 naming %s", c.arg, code, stderr.String(), c.names)
		}
	}
}
