package authn

import (
	"context"
	"fmt"
	"strings"

	"github.com/herald-health/herald/platform/identity"
)

// ClaimBinder binds a person from their access token's claims: the Herald
// person id from PersonClaim and the roles from RolesClaim, a list of
// "TRUST:role" strings ("*:operator" for a network-wide role). It is the
// binding of the development identity provider (platform/devidp) and of an
// issuer that carries Herald's roles; a role-binding file replaces it where
// the issuer does not.
type ClaimBinder struct {
	PersonClaim string
	RolesClaim  string
}

// Bind implements RoleBinder.
func (b ClaimBinder) Bind(ctx context.Context, p *identity.Person) error {
	claims := Claims(ctx)
	p.PersonID, _ = claims[b.PersonClaim].(string)
	raw, _ := claims[b.RolesClaim].([]any)
	for _, r := range raw {
		s, _ := r.(string)
		trust, role, ok := strings.Cut(s, ":")
		if !ok || trust == "" || role == "" {
			return fmt.Errorf("claim %s: %q is not TRUST:role", b.RolesClaim, s)
		}
		if p.Roles == nil {
			p.Roles = map[string][]identity.Role{}
		}
		p.Roles[trust] = append(p.Roles[trust], identity.Role(role))
	}
	return nil
}

// Binding is what StaticBinder knows of one subject.
type Binding struct {
	PersonID string
	Roles    map[string][]identity.Role
}

// StaticBinder binds subjects from a fixed table (tests); a subject not in
// it keeps no person id and no roles.
type StaticBinder map[string]Binding

// Bind implements RoleBinder.
func (b StaticBinder) Bind(_ context.Context, p *identity.Person) error {
	if x, ok := b[p.Subject]; ok {
		p.PersonID, p.Roles = x.PersonID, x.Roles
	}
	return nil
}
