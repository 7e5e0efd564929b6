package safetycase

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/herald-health/herald/e2e/harness"
	"github.com/stretchr/testify/require"
)

// The hazard log of the repository cites only tests that exist, and every
// hazard has a mitigation a test proves.
func TestHazardLogCitesOnlyTestsThatExist(t *testing.T) {
	root := harness.RepoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "docs", "safety", "hazard-log.md"))
	require.NoError(t, err)
	hazards, err := ParseHazardLog(strings.NewReader(string(data)))
	require.NoError(t, err)
	defined := definedTests(t, root)
	problems := Problems(string(data), hazards, func(name string) bool { return defined[name] })
	require.Empty(t, problems, "docs/safety/hazard-log.md is not true of the code")
}

// The checker itself finds each kind of drift.
func TestHazardLogCheckerFindsDrift(t *testing.T) {
	exists := func(name string) bool { return name == "TestReal" }
	for _, tc := range []struct {
		name, log, want string
	}{
		{"missing test", "## HAZ-01 x\n| Mitigation | Proved by | Status |\n|---|---|---|\n| m | TestGone | built |\n", "cites TestGone"},
		{"built without test", "## HAZ-01 x\n| Mitigation | Proved by | Status |\n|---|---|---|\n| m | TestReal | built |\n| n | – | built |\n", "cites no test"},
		{"only open", "## HAZ-01 x\n| Mitigation | Proved by | Status |\n|---|---|---|\n| m | | open (#18) |\n", "no built mitigation"},
		{"bad status", "## HAZ-01 x\n| Mitigation | Proved by | Status |\n|---|---|---|\n| m | TestReal | done |\n", "neither built nor open"},
		{"no hazards", "# empty\n", "no HAZ sections"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hazards, err := ParseHazardLog(strings.NewReader(tc.log))
			require.NoError(t, err)
			problems := Problems(tc.log, hazards, exists)
			require.NotEmpty(t, problems)
			require.Contains(t, strings.Join(problems, "\n"), tc.want)
		})
	}
	good := "## HAZ-01 x\n| Mitigation | Proved by | Status |\n|---|---|---|\n| m | TestReal | built |\n| n | | open (#17) |\n"
	hazards, err := ParseHazardLog(strings.NewReader(good))
	require.NoError(t, err)
	require.Empty(t, Problems(good, hazards, exists))
}

var testFunc = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*)\(`)

// definedTests returns the names of every test, fuzz target and benchmark
// defined in the repository's _test.go files.
func definedTests(t *testing.T, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".deps", "node_modules", "bin", "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range testFunc.FindAllStringSubmatch(string(src), -1) {
			out[m[1]] = true
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, out, "no tests found under %s", root)
	return out
}
