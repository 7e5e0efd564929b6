// Package app holds the rules service's use cases: the registry of policy
// bundles in force, the loader that watches a bundle directory, and the
// router that turns raised, amended and quarantined alerts into AlertRouted
// events. It knows the domain and small ports; the transports (Kafka, gRPC)
// live in the composition root and adapters.
package app

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// maxVersions is how many versions per tenant the registry remembers.
const maxVersions = 50

// Version is one loaded bundle version.
type Version struct {
	Bundle   *bundle.Bundle
	LoadedAt time.Time
	// Source says where it came from: "dir:<name>" or "grpc".
	Source string
}

// Snapshot is an immutable set of active bundles; it implements
// routing.Bundles.
type Snapshot struct {
	bundles map[string]*bundle.Bundle
}

// Bundle returns the tenant's active bundle.
func (s *Snapshot) Bundle(tenant string) (*bundle.Bundle, bool) {
	b, ok := s.bundles[tenant]
	return b, ok
}

// Tenants returns the tenants with an active bundle, sorted.
func (s *Snapshot) Tenants() []string {
	out := make([]string, 0, len(s.bundles))
	for t := range s.bundles {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// With returns a snapshot with b in force for its tenant instead (a dry
// run of a proposed bundle); s is unchanged.
func (s *Snapshot) With(b *bundle.Bundle) *Snapshot {
	next := make(map[string]*bundle.Bundle, len(s.bundles)+1)
	for t, v := range s.bundles {
		next[t] = v
	}
	next[b.Tenant] = b
	return &Snapshot{bundles: next}
}

// Registry holds the active bundle of each tenant and the versions loaded
// since start. Readers take a Snapshot without locking; activation swaps it
// atomically, so a routing decision never sees half a bundle.
type Registry struct {
	now     func() time.Time
	active  atomic.Pointer[Snapshot]
	mu      sync.Mutex
	history map[string][]Version // newest first
}

// NewRegistry returns an empty registry; now stamps load times.
func NewRegistry(now func() time.Time) *Registry {
	r := &Registry{now: now, history: map[string][]Version{}}
	r.active.Store(&Snapshot{bundles: map[string]*bundle.Bundle{}})
	return r
}

// Snapshot returns the bundles in force now.
func (r *Registry) Snapshot() *Snapshot { return r.active.Load() }

// Check reports whether b could be activated: a version already loaded with
// different content is refused (a version names one content forever).
func (r *Registry) Check(b *bundle.Bundle) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.check(b)
}

func (r *Registry) check(b *bundle.Bundle) error {
	for _, v := range r.history[b.Tenant] {
		if v.Bundle.Version == b.Version && v.Bundle.Hash != b.Hash {
			return &bundle.ValidationError{Problems: []bundle.Problem{{
				File: b.VersionFile, Path: "version",
				Problem: fmt.Sprintf("version %q of %s is already loaded with different content: give the changed bundle a new version", b.Version, b.Tenant),
			}}}
		}
	}
	return nil
}

// Activate makes b its tenant's bundle in force. It returns false when b is
// already active (same content), and a *bundle.ValidationError when its
// version is taken by other content.
func (r *Registry) Activate(b *bundle.Bundle, source string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.active.Load()
	if a, ok := cur.bundles[b.Tenant]; ok && a.Hash == b.Hash {
		return false, nil
	}
	if err := r.check(b); err != nil {
		return false, err
	}
	hist := []Version{{Bundle: b, LoadedAt: r.now(), Source: source}}
	for _, v := range r.history[b.Tenant] {
		if v.Bundle.Hash != b.Hash && len(hist) < maxVersions {
			hist = append(hist, v)
		}
	}
	r.history[b.Tenant] = hist
	next := make(map[string]*bundle.Bundle, len(cur.bundles)+1)
	for t, v := range cur.bundles {
		next[t] = v
	}
	next[b.Tenant] = b
	r.active.Store(&Snapshot{bundles: next})
	return true, nil
}

// Active returns the tenant's active version.
func (r *Registry) Active(tenant string) (Version, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.active.Load().bundles[tenant]
	if !ok {
		return Version{}, false
	}
	for _, v := range r.history[tenant] {
		if v.Bundle == b {
			return v, true
		}
	}
	return Version{Bundle: b}, true
}

// Versions lists the tenant's loaded versions, newest first.
func (r *Registry) Versions(tenant string) []Version {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Version(nil), r.history[tenant]...)
}

// ByHash returns the tenant's version with this content hash, if it was
// loaded since start.
func (r *Registry) ByHash(tenant, hash string) (*bundle.Bundle, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.history[tenant] {
		if v.Bundle.Hash == hash {
			return v.Bundle, true
		}
	}
	return nil, false
}
