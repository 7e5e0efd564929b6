package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// ReadBundles reads the bundles of a directory: each sub-directory is one
// tenant's bundle made of the *.yaml and *.yml files directly in it, and
// each YAML file at the top is a bundle on its own. Names starting with a
// dot are skipped (editor files, Kubernetes ConfigMap internals). File names
// are relative to the directory ("RZZ/rules.yaml"), so problems name them.
func ReadBundles(fsys fs.FS) (map[string][]bundle.File, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read bundle directory: %w", err)
	}
	out := map[string][]bundle.File{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		info, err := fs.Stat(fsys, name) // follows symlinks
		if err != nil {
			return nil, fmt.Errorf("read bundle directory entry %s: %w", name, err)
		}
		if info.IsDir() {
			files, err := readYAMLFiles(fsys, name)
			if err != nil {
				return nil, err
			}
			if len(files) > 0 {
				out[name] = files
			}
			continue
		}
		if isYAML(name) {
			content, err := fs.ReadFile(fsys, name)
			if err != nil {
				return nil, fmt.Errorf("read bundle file %s: %w", name, err)
			}
			out[name] = []bundle.File{{Name: name, Content: content}}
		}
	}
	return out, nil
}

func readYAMLFiles(fsys fs.FS, dir string) ([]bundle.File, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read bundle directory %s: %w", dir, err)
	}
	var files []bundle.File
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !isYAML(e.Name()) {
			continue
		}
		p := path.Join(dir, e.Name())
		info, err := fs.Stat(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("read bundle file %s: %w", p, err)
		}
		if info.IsDir() {
			continue
		}
		content, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("read bundle file %s: %w", p, err)
		}
		files = append(files, bundle.File{Name: p, Content: content})
	}
	return files, nil
}

func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// Loader loads a bundle directory into the registry and reloads what
// changed. A bundle that fails validation never replaces the running one:
// its problems are logged (file, path, problem) and the old one stays.
type Loader struct {
	fsys     fs.FS
	registry *Registry
	logger   *slog.Logger
	onError  func(group string)

	// gate, when set, must accept a bundle before it is activated (the
	// production profile: its content approved by a second person).
	gate func(*bundle.Bundle) error

	mu       sync.Mutex
	seen     map[string]string // group -> content hash last tried
	tenantOf map[string]string // group -> tenant of its active bundle
}

// NewLoader returns a loader of fsys into registry. onError (may be nil) is
// told the group of every bundle that failed to load (for a metric).
func NewLoader(fsys fs.FS, registry *Registry, logger *slog.Logger, onError func(group string)) *Loader {
	if onError == nil {
		onError = func(string) {}
	}
	return &Loader{fsys: fsys, registry: registry, logger: logger, onError: onError, seen: map[string]string{}, tenantOf: map[string]string{}}
}

// SetGate makes every bundle of the directory pass gate before it is
// activated; one refused with ErrAwaitingApproval is logged and left out of
// force, but is not a load error (it may be approved later).
func (l *Loader) SetGate(gate func(*bundle.Bundle) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gate = gate
}

// Load reads the directory and activates every bundle whose content changed
// since the last Load. It returns the problems of the bundles that were
// rejected (joined), nil when all changed bundles were activated.
func (l *Loader) Load(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	groups, err := ReadBundles(l.fsys)
	if err != nil {
		l.logger.ErrorContext(ctx, "bundle directory unreadable; keeping the bundles in force", "error", err)
		l.onError("")
		return err
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	// Tenants of the unchanged bundles, so a changed one cannot take theirs.
	owner := map[string]string{}
	hashes := make(map[string]string, len(groups))
	for _, g := range names {
		hashes[g] = bundle.Hash(groups[g])
		if l.seen[g] == hashes[g] {
			if t, ok := l.tenantOf[g]; ok {
				owner[t] = g
			}
		}
	}
	var errs []error
	for _, g := range names {
		files, hash := groups[g], hashes[g]
		if l.seen[g] == hash {
			continue // unchanged since the last attempt (loaded, or already reported)
		}
		l.seen[g] = hash
		delete(l.tenantOf, g)
		b, err := bundle.Parse(files)
		if err == nil {
			if prev, dup := owner[b.Tenant]; dup {
				err = &bundle.ValidationError{Problems: []bundle.Problem{{File: files[0].Name, Path: "tenant",
					Problem: fmt.Sprintf("tenant %s is also the tenant of bundle %s: one bundle per tenant", b.Tenant, prev)}}}
			}
		}
		if err == nil && l.gate != nil {
			if err = l.gate(b); errors.Is(err, ErrAwaitingApproval) {
				l.onError(g)
				l.logger.WarnContext(ctx, "policy bundle of the directory is not approved; it is not in force", "bundle", g, "tenant", b.Tenant,
					"version", b.Version, "content_hash", b.Hash, "error", err.Error())
				continue
			}
		}
		if err == nil {
			var changed bool
			changed, err = l.registry.Activate(b, "dir:"+g)
			if err == nil {
				owner[b.Tenant] = g
				l.tenantOf[g] = b.Tenant
				if changed {
					l.logger.InfoContext(ctx, "policy bundle activated", "tenant", b.Tenant, "version", b.Version, "content_hash", b.Hash, "source", "dir:"+g)
				}
				continue
			}
		}
		l.onError(g)
		for _, p := range bundle.Problems(err) {
			l.logger.ErrorContext(ctx, "policy bundle rejected; the bundle in force stays", "bundle", g, "file", p.File, "path", p.Path, "problem", p.Problem)
		}
		errs = append(errs, fmt.Errorf("bundle %s: %w", g, err))
	}
	return errors.Join(errs...)
}

// Watch reloads the directory every interval until ctx is done.
func (l *Loader) Watch(ctx context.Context, clk clock.Clock, interval time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-clk.After(interval):
			_ = l.Load(ctx) // problems are logged by Load
		}
	}
}
