package bundledir_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/services/rules/internal/adapters/bundledir"
	"github.com/herald-health/herald/services/rules/internal/app"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

func demoFile(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "bundles", "demo", "RZY", "bundle.yaml"))
	require.NoError(t, err)
	return b
}

func TestSaveReplacesTheTenantsFilesWhole(t *testing.T) {
	dir := t.TempDir()
	s := bundledir.Store{Dir: dir}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "RZY"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "RZY", "old.yaml"), []byte("x"), 0o644))

	require.NoError(t, s.Save("RZY", []bundle.File{{Name: "RZY/a.yaml", Content: []byte("a")}, {Name: "b.yaml", Content: []byte("b")}}))

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary or old directory is left behind")
	got, err := os.ReadDir(filepath.Join(dir, "RZY"))
	require.NoError(t, err)
	require.Equal(t, []string{"a.yaml", "b.yaml"}, []string{got[0].Name(), got[1].Name()})

	require.Error(t, s.Save("../x", nil))
	require.Error(t, s.Save("RZY", []bundle.File{{Name: ".hidden.yaml"}}))
	_, err = os.Stat(filepath.Join(dir, "RZY", "a.yaml"))
	require.NoError(t, err, "a refused save keeps the old files")
}

func TestPublishPersistsAndActivates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	content := demoFile(t)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "RZY"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "RZY", "bundle.yaml"), content, 0o644))
	reg := app.NewRegistry(time.Now)
	l := app.NewLoader(os.DirFS(dir), reg, logging.Discard(), nil)
	require.NoError(t, l.Load(ctx))

	// Given a new version split into two files.
	text := strings.Replace(string(content), `version: "2026.11.29-1"`, `version: "2026.11.29-7"`, 1)
	i := strings.Index(text, "people:")
	b, err := bundle.Parse([]bundle.File{{Name: "RZY/main.yaml", Content: []byte(text[:i])}, {Name: "RZY/people.yaml", Content: []byte(text[i:])}})
	require.NoError(t, err)

	// When it is published.
	require.NoError(t, l.Publish(ctx, bundledir.Store{Dir: dir}, b))

	// Then it is in force, and a fresh loader of the directory (a restart,
	// another replica) activates the same content.
	active, _ := reg.Snapshot().Bundle("RZY")
	require.Equal(t, b.Hash, active.Hash)
	reg2 := app.NewRegistry(time.Now)
	require.NoError(t, app.NewLoader(os.DirFS(dir), reg2, logging.Discard(), nil).Load(ctx))
	again, _ := reg2.Snapshot().Bundle("RZY")
	require.Equal(t, b.Hash, again.Hash)
	require.Equal(t, "2026.11.29-7", again.Version)
}
