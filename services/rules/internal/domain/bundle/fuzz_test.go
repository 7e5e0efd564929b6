package bundle_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

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

// FuzzParseDuration checks the duration parser's contract: a "d" suffix
// is a whole number of days of at most ten years either way, read with its
// sign (so a negative day count is never positive); anything else is
// exactly Go's time.ParseDuration; an error says what a duration looks
// like; and it never panics.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"15m", "1h30m", "14d", "-1d", "+2d", "d", "-0d", "3650d", "3651d", "-3650d", "9999999999999d", "", "1.5d", " 1d", "-90m"} {
		f.Add(s)
	}
	const tenYears = 3650 * 24 * time.Hour
	f.Fuzz(func(t *testing.T, s string) {
		got, err := bundle.ParseDuration(s)
		if err != nil {
			if got != 0 || !strings.Contains(err.Error(), "is not a duration") {
				t.Fatalf("ParseDuration(%q) = %v, %v: want 0 and an error saying what a duration looks like", s, got, err)
			}
		}
		days, isDays := strings.CutSuffix(s, "d")
		if !isDays {
			want, werr := time.ParseDuration(s)
			if (err == nil) != (werr == nil) || (err == nil && got != want) {
				t.Fatalf("ParseDuration(%q) = %v, %v; time.ParseDuration gives %v, %v", s, got, err, want, werr)
			}
			return
		}
		n, nerr := strconv.ParseInt(days, 10, 64)
		inRange := nerr == nil && n >= -3650 && n <= 3650
		if inRange != (err == nil) {
			t.Fatalf("ParseDuration(%q): got error %v; want an error exactly when %q is not a day count within ten years", s, err, days)
		}
		if err != nil {
			return
		}
		if got != time.Duration(n)*24*time.Hour || got > tenYears || got < -tenYears {
			t.Fatalf("ParseDuration(%q) = %v, want %d days", s, got, n)
		}
		if negative := strings.HasPrefix(days, "-"); (negative && got > 0) || (!negative && got < 0) {
			t.Fatalf("ParseDuration(%q) = %v: the sign of the day count was lost", s, got)
		}
	})
}
