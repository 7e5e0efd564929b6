// Package bundledir writes a tenant's policy bundle into the bundle
// directory, so a bundle loaded through the API is as durable as one put
// there by hand and is what the directory loader (and every replica sharing
// the directory) activates.
package bundledir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// Store writes bundles under Dir: one sub-directory per tenant.
type Store struct {
	Dir string
}

// Save replaces the tenant's sub-directory with files (names are taken
// relative to it: "RZZ/rules.yaml" or "rules.yaml"). The new directory is
// written beside the old one and swapped in with renames, and every file is
// synced first, so a reader sees the old bundle, no bundle (which keeps the
// one in force), or the whole new one. An error means the directory may
// still hold the old bundle; nothing half-written is left visible.
func (s Store) Save(tenant string, files []bundle.File) error {
	if tenant == "" || strings.ContainsAny(tenant, `/\.`) {
		return fmt.Errorf("save bundle: tenant %q is not a directory name", tenant)
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	tmp := filepath.Join(s.Dir, ".tmp-"+tenant+"-"+hex.EncodeToString(suffix))
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("save bundle of %s: %w", tenant, err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	for _, f := range files {
		name := filepath.Base(filepath.FromSlash(f.Name))
		if name == "." || name == string(filepath.Separator) || strings.HasPrefix(name, ".") {
			return fmt.Errorf("save bundle of %s: file name %q is not usable", tenant, f.Name)
		}
		if err := writeSynced(filepath.Join(tmp, name), f.Content); err != nil {
			return fmt.Errorf("save bundle of %s: %w", tenant, err)
		}
	}
	final := filepath.Join(s.Dir, tenant)
	old := filepath.Join(s.Dir, ".old-"+tenant+"-"+hex.EncodeToString(suffix))
	if err := os.Rename(final, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("save bundle of %s: move the old bundle aside: %w", tenant, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Rename(old, final)
		return fmt.Errorf("save bundle of %s: %w", tenant, err)
	}
	_ = os.RemoveAll(old)
	if d, err := os.Open(s.Dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func writeSynced(path string, content []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(content); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
