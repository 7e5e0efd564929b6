package app_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/services/rules/internal/app"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// demoDir copies the demo bundles into a temporary directory.
func demoDir(t *testing.T) string {
	t.Helper()
	src := filepath.Join("..", "..", "bundles", "demo")
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	require.NoError(t, err)
	return dst
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
}

func edit(t *testing.T, dir, name, old, new string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)
	require.Contains(t, string(b), old)
	write(t, dir, name, strings.Replace(string(b), old, new, 1))
}

type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func activeHash(r *app.Registry, tenant string) string {
	b, ok := r.Snapshot().Bundle(tenant)
	if !ok {
		return ""
	}
	return b.Hash
}

func TestHotReloadNeverReplacesTheRunningBundleWithABrokenOne(t *testing.T) {
	ctx := context.Background()
	dir := demoDir(t)
	logs := &logSink{}
	reg := app.NewRegistry(time.Now)
	var rejected []string
	l := app.NewLoader(os.DirFS(dir), reg, logging.New(logs, 0, "rules"), func(g string) { rejected = append(rejected, g) })

	// Given the demo bundles loaded.
	require.NoError(t, l.Load(ctx))
	require.Equal(t, []string{"RZY", "RZZ"}, reg.Snapshot().Tenants())
	rzz, rzy := activeHash(reg, "RZZ"), activeHash(reg, "RZY")

	// When a file that is not YAML appears in RZZ's bundle.
	write(t, dir, "RZZ/broken.yaml", "rules: [unclosed\n")
	err := l.Load(ctx)
	// Then the error names the file, and the running bundles stay.
	require.ErrorContains(t, err, "RZZ/broken.yaml: is not valid YAML")
	require.Equal(t, rzz, activeHash(reg, "RZZ"))
	require.Equal(t, rzy, activeHash(reg, "RZY"))
	require.Equal(t, []string{"RZZ"}, rejected)
	require.Contains(t, logs.String(), `"file":"RZZ/broken.yaml"`)

	// When the file is removed but a policy gets a bad timeout.
	require.NoError(t, os.Remove(filepath.Join(dir, "RZZ/broken.yaml")))
	edit(t, dir, "RZZ/policies.yaml", "timeout: 10m", "timeout: ten minutes")
	err = l.Load(ctx)
	// Then the problem names file, path and problem, and the old bundle stays.
	probs := bundle.Problems(err)
	require.Equal(t, []bundle.Problem{{File: "RZZ/policies.yaml", Path: "policies[0].steps[0].timeout", Problem: `"ten minutes" is not a duration (e.g. 15m, 1h30m, 14d)`}}, probs)
	require.Contains(t, logs.String(), `"path":"policies[0].steps[0].timeout"`)
	require.Equal(t, rzz, activeHash(reg, "RZZ"))
	// And an unchanged broken directory is not reported again.
	require.NoError(t, l.Load(ctx))
	require.Len(t, rejected, 2)

	// When the change is fixed but keeps the old version.
	edit(t, dir, "RZZ/policies.yaml", "timeout: ten minutes", "timeout: 5m")
	err = l.Load(ctx)
	// Then it is refused: a version names one content.
	require.Equal(t, []bundle.Problem{{File: "RZZ/trust.yaml", Path: "version",
		Problem: `version "2026.11.29-1" of RZZ is already loaded with different content: give the changed bundle a new version`}}, bundle.Problems(err))
	require.Equal(t, rzz, activeHash(reg, "RZZ"))

	// When the version is bumped, the new bundle replaces the old one.
	edit(t, dir, "RZZ/trust.yaml", `version: "2026.11.29-1"`, `version: "2026.11.29-2"`)
	require.NoError(t, l.Load(ctx))
	b, _ := reg.Snapshot().Bundle("RZZ")
	require.Equal(t, "2026.11.29-2", b.Version)
	require.Equal(t, 5*time.Minute, b.Policies["critical"].Steps[0].Timeout)
	require.Len(t, reg.Versions("RZZ"), 2)
	require.Equal(t, rzy, activeHash(reg, "RZY"))

	// When a tenant's directory disappears, its bundle stays in force.
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "RZY")))
	require.NoError(t, l.Load(ctx))
	require.Equal(t, rzy, activeHash(reg, "RZY"))

	// When another directory claims a tenant that is already served by one.
	entries, err := os.ReadDir(filepath.Join(dir, "RZZ"))
	require.NoError(t, err)
	for _, e := range entries {
		c, err := os.ReadFile(filepath.Join(dir, "RZZ", e.Name()))
		require.NoError(t, err)
		write(t, dir, "copy/"+e.Name(), strings.Replace(string(c), `version: "2026.11.29-2"`, `version: "9"`, 1))
	}
	err = l.Load(ctx)
	require.ErrorContains(t, err, "tenant RZZ is also the tenant of bundle RZZ: one bundle per tenant")
	b, _ = reg.Snapshot().Bundle("RZZ")
	require.Equal(t, "2026.11.29-2", b.Version)
}

func TestWatchReloadsOnTheClock(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := demoDir(t)
	reg := app.NewRegistry(time.Now)
	l := app.NewLoader(os.DirFS(dir), reg, logging.Discard(), nil)
	require.NoError(t, l.Load(ctx))
	clk := clock.NewSimulated(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	done := make(chan struct{})
	go func() { l.Watch(ctx, clk, 5*time.Second); close(done) }()

	// Given a valid change on disk.
	edit(t, dir, "RZY/bundle.yaml", `version: "2026.11.29-1"`, `version: "2026.11.29-9"`)
	// When the poll interval passes, the new version is in force.
	require.Eventually(t, func() bool {
		clk.Advance(5 * time.Second)
		b, _ := reg.Snapshot().Bundle("RZY")
		return b.Version == "2026.11.29-9"
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	<-done
}

func TestReadBundlesLayout(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "RZZ/a.yaml", "tenant: RZZ\n")
	write(t, dir, "RZZ/b.yml", "version: x\n")
	write(t, dir, "RZZ/notes.txt", "ignored")
	write(t, dir, "RZZ/.swap.yaml", "ignored")
	write(t, dir, "RZY.yaml", "tenant: RZY\n")
	write(t, dir, ".hidden/x.yaml", "ignored")
	write(t, dir, "README.md", "ignored")
	groups, err := app.ReadBundles(os.DirFS(dir))
	require.NoError(t, err)
	require.Len(t, groups, 2)
	require.Equal(t, []bundle.File{{Name: "RZZ/a.yaml", Content: []byte("tenant: RZZ\n")}, {Name: "RZZ/b.yml", Content: []byte("version: x\n")}}, groups["RZZ"])
	require.Equal(t, []bundle.File{{Name: "RZY.yaml", Content: []byte("tenant: RZY\n")}}, groups["RZY.yaml"])
}
