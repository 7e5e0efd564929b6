package bundle_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// demoFiles reads one tenant's demo bundle.
func demoFiles(t testing.TB, tenant string) []bundle.File {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "bundles", "demo", tenant)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var files []bundle.File
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		files = append(files, bundle.File{Name: tenant + "/" + e.Name(), Content: b})
	}
	require.NotEmpty(t, files)
	return files
}

func mustParse(t testing.TB, files []bundle.File) *bundle.Bundle {
	t.Helper()
	b, err := bundle.Parse(files)
	if err != nil {
		for _, p := range bundle.Problems(err) {
			t.Log(p.String())
		}
	}
	require.NoError(t, err)
	return b
}
