package authz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/herald-health/herald/platform/authz/access"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/identity"
	"github.com/herald-health/herald/platform/logging"
)

// File is the role-binding file (YAML): which person holds which roles for
// which trust, and which systems (mTLS identities) call on their own
// account with which roles. docs/authorization.md shows an example.
type File struct {
	// Trusts maps a trust's ODS code (or "*" for network-wide bindings) to
	// its bindings.
	Trusts map[string][]Binding `yaml:"trusts"`
	// Services binds certificate identities of systems that call without a
	// person (integration senders; in development also the tools).
	Services []ServiceBinding `yaml:"services"`
}

// Binding grants roles to the people a token names by subject, by email
// or by a role claim (exactly one of the three).
type Binding struct {
	// Subject is the token's sub; Issuer, when set, must match too.
	Subject string `yaml:"subject"`
	Issuer  string `yaml:"issuer"`
	// Email is the token's email claim (compared case-insensitively).
	Email string `yaml:"email"`
	// RoleClaim is a value of the token's role claim (for CIS2 a
	// nhsid_nrbac_roles role code): everyone holding it gets the roles.
	RoleClaim string `yaml:"role_claim"`
	// Person is the person's id in the trust's directory (optional for a
	// role-claim binding).
	Person string          `yaml:"person"`
	Roles  []identity.Role `yaml:"roles"`
}

// ServiceBinding grants roles per trust to a certificate identity (the
// first URI SAN, a SPIFFE ID, or else the first DNS SAN).
type ServiceBinding struct {
	Identity string `yaml:"identity"`
	// Person is the person id recorded for the calls (development tools).
	Person string `yaml:"person"`
	// Roles maps a trust's ODS code (or "*") to the roles.
	Roles map[string][]identity.Role `yaml:"roles"`
}

// Parse reads and checks a role-binding file. In the production profile
// (development false) a service binding may hold only the
// integration-sender role: a system is not a person and cannot
// acknowledge, close or administer; development tools (heraldctl, the e2e
// harness) may be bound to any role until people log in (issue #20).
func Parse(data []byte, development bool) (*Bindings, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("role bindings: %w", err)
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("role bindings: "+format, a...)) }
	b := &Bindings{bySubject: map[string][]grant{}, byEmail: map[string][]grant{}, byClaim: map[string][]grant{}, services: map[string]*identity.Person{}}
	trusts := make([]string, 0, len(f.Trusts))
	for trust := range f.Trusts {
		trusts = append(trusts, trust)
	}
	sort.Strings(trusts)
	for _, trust := range trusts {
		if err := checkTrust(trust); err != nil {
			bad("trusts.%s: %v", trust, err)
			continue
		}
		for i, e := range f.Trusts[trust] {
			path := fmt.Sprintf("trusts.%s[%d]", trust, i)
			keys := 0
			for _, k := range []string{e.Subject, e.Email, e.RoleClaim} {
				if k != "" {
					keys++
				}
			}
			if keys != 1 {
				bad("%s: exactly one of subject, email and role_claim is required", path)
				continue
			}
			if err := checkRoles(e.Roles); err != nil {
				bad("%s.roles: %v", path, err)
				continue
			}
			g := grant{trust: trust, issuer: e.Issuer, person: e.Person, roles: e.Roles}
			switch {
			case e.Subject != "":
				b.bySubject[e.Subject] = append(b.bySubject[e.Subject], g)
			case e.Email != "":
				k := strings.ToLower(e.Email)
				b.byEmail[k] = append(b.byEmail[k], g)
			default:
				b.byClaim[e.RoleClaim] = append(b.byClaim[e.RoleClaim], g)
			}
		}
	}
	for i, s := range f.Services {
		path := fmt.Sprintf("services[%d]", i)
		if s.Identity == "" {
			bad("%s.identity: is required", path)
			continue
		}
		if _, dup := b.services[s.Identity]; dup {
			bad("%s.identity: %s is bound twice", path, s.Identity)
			continue
		}
		p := &identity.Person{Issuer: MTLSIssuer, Subject: s.Identity, PersonID: s.Person, DisplayName: s.Identity, Roles: map[string][]identity.Role{}}
		ok := true
		for trust, roles := range s.Roles {
			if err := checkTrust(trust); err != nil {
				bad("%s.roles.%s: %v", path, trust, err)
				ok = false
				continue
			}
			if err := checkRoles(roles); err != nil {
				bad("%s.roles.%s: %v", path, trust, err)
				ok = false
				continue
			}
			if !development {
				for _, r := range roles {
					if r != access.IntegrationSender {
						bad("%s.roles.%s: role %s is refused for a service identity in the production profile (only %s; people log in)", path, trust, r, access.IntegrationSender)
						ok = false
					}
				}
			}
			p.Roles[trust] = slices.Clone(roles)
		}
		if ok {
			b.services[s.Identity] = p
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return b, nil
}

// MTLSIssuer is the Issuer of the person a bound service identity calls
// as: the identity came from a client certificate, not a token.
const MTLSIssuer = "mtls"

func checkTrust(trust string) error {
	if trust == identity.AllTrusts {
		return nil
	}
	if trust == "" || len(trust) > 16 || strings.ContainsAny(trust, " \t*:/") {
		return fmt.Errorf("%q is not an ODS code (or * for network-wide)", trust)
	}
	return nil
}

func checkRoles(roles []identity.Role) error {
	if len(roles) == 0 {
		return errors.New("at least one role is required")
	}
	for _, r := range roles {
		if !slices.Contains(access.AllRoles, r) {
			return fmt.Errorf("unknown role %q (want one of %v)", r, access.AllRoles)
		}
	}
	return nil
}

type grant struct {
	trust, issuer, person string
	roles                 []identity.Role
}

// Bindings is a parsed role-binding file.
type Bindings struct {
	bySubject, byEmail, byClaim map[string][]grant
	services                    map[string]*identity.Person
}

// Bind fills p's PersonID and Roles from the bindings matching its
// subject, email and role claims (roles accumulate; the person id is that
// of the first subject binding, else of the first email binding, else of
// the first role-claim binding naming one, in trust order). A person no
// binding names gets no roles: that is not an error.
func (b *Bindings) Bind(_ context.Context, p *identity.Person) error {
	if p == nil {
		return errors.New("bind roles: no person")
	}
	roles := map[string][]identity.Role{}
	person := ""
	add := func(gs []grant) {
		for _, g := range gs {
			if g.issuer != "" && g.issuer != p.Issuer {
				continue
			}
			for _, r := range g.roles {
				if !slices.Contains(roles[g.trust], r) {
					roles[g.trust] = append(roles[g.trust], r)
				}
			}
			if person == "" {
				person = g.person
			}
		}
	}
	if p.Subject != "" {
		add(b.bySubject[p.Subject])
	}
	if p.Email != "" {
		add(b.byEmail[strings.ToLower(p.Email)])
	}
	for _, c := range p.RoleClaims {
		add(b.byClaim[c])
	}
	p.Roles = roles
	if person != "" {
		p.PersonID = person
	}
	return nil
}

// Service returns the person a service identity calls as, when it is
// bound (a copy the caller may keep).
func (b *Bindings) Service(id string) (*identity.Person, bool) {
	p, ok := b.services[id]
	if !ok {
		return nil, false
	}
	c := *p
	return &c, true
}

// Source is a role-binding file that is re-read when it changes: a check
// at most every CheckEvery (default 2 s) when it is used. A change that
// does not parse is logged and the previous bindings stay in force.
type Source struct {
	path        string
	development bool
	every       time.Duration
	clk         clock.Clock
	log         *slog.Logger

	cur       atomic.Pointer[loaded]
	lastCheck atomic.Int64
	mu        sync.Mutex
	rejected  string
}

type loaded struct {
	b       *Bindings
	raw     []byte
	modTime time.Time
	size    int64
}

// Options tune a Source.
type Options struct {
	// Development allows service bindings with any role (see Parse).
	Development bool
	// CheckEvery is how often the file is looked at (default 2 s).
	CheckEvery time.Duration
	Clock      clock.Clock
	Logger     *slog.Logger
}

// DefaultCheckEvery is how often a Source looks at its file.
const DefaultCheckEvery = 2 * time.Second

// Load reads the role-binding file at path; an error names the file and
// the entry at fault.
func Load(path string, o Options) (*Source, error) {
	s := &Source{path: path, development: o.Development, every: o.CheckEvery, clk: o.Clock, log: o.Logger}
	if s.every <= 0 {
		s.every = DefaultCheckEvery
	}
	if s.clk == nil {
		s.clk = clock.Real{}
	}
	if s.log == nil {
		s.log = logging.Discard()
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the file now; on error the previous bindings stay.
func (s *Source) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *Source) reloadLocked() error {
	s.lastCheck.Store(s.clk.Now().UnixNano())
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("role bindings (setting role-bindings-file): %w", err)
	}
	old := s.cur.Load()
	if old != nil && fi.ModTime().Equal(old.modTime) && fi.Size() == old.size {
		return nil
	}
	raw, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("role bindings (setting role-bindings-file): %w", err)
	}
	if old != nil && bytes.Equal(raw, old.raw) {
		s.cur.Store(&loaded{b: old.b, raw: raw, modTime: fi.ModTime(), size: fi.Size()})
		return nil
	}
	b, err := Parse(raw, s.development)
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	s.cur.Store(&loaded{b: b, raw: raw, modTime: fi.ModTime(), size: fi.Size()})
	if old != nil {
		s.log.Info("role bindings reloaded", slog.String("file", s.path))
	}
	return nil
}

// Current returns the bindings in force, first re-reading the file when
// the last look is older than CheckEvery (one caller looks; the others go
// on with what is loaded).
func (s *Source) Current() *Bindings {
	if s.clk.Now().UnixNano()-s.lastCheck.Load() >= int64(s.every) && s.mu.TryLock() {
		if err := s.reloadLocked(); err != nil && err.Error() != s.rejected {
			s.rejected = err.Error()
			s.log.Warn("role bindings changed but do not load; keeping the previous ones", slog.String("error", err.Error()))
		}
		s.mu.Unlock()
	}
	return s.cur.Load().b
}

// Bind binds p with the bindings in force: the RoleBinder that
// authentication calls.
func (s *Source) Bind(ctx context.Context, p *identity.Person) error {
	return s.Current().Bind(ctx, p)
}

// Service is Bindings.Service on the bindings in force.
func (s *Source) Service(id string) (*identity.Person, bool) {
	return s.Current().Service(id)
}
