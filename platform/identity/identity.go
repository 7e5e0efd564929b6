// Package identity is who is calling Herald: a person, verified from an
// OpenID Connect access token, and the service that relayed the call,
// verified from its mTLS client certificate.
//
// Authentication (token and certificate verification) puts a Caller into the
// request context; authorization and the command handlers read it from there.
// The actor of a command always comes from here, never from a request field.
package identity

import (
	"context"
	"slices"
)

// Role is what a person may do for a trust.
type Role string

// The roles of Herald (issue #20).
const (
	RoleClinician         Role = "clinician"
	RoleFailsafeOfficer   Role = "failsafe-officer"
	RoleSafetyLead        Role = "safety-lead"
	RolePolicyAdmin       Role = "policy-admin"
	RoleIntegrationSender Role = "integration-sender"
	RoleOperator          Role = "operator"
)

// AllTrusts is the trust key of a network-wide role binding.
const AllTrusts = "*"

// Person is a human caller verified from an access token.
type Person struct {
	// Issuer and Subject identify the person at the identity provider
	// (for CIS2, the issuer URL and the person's UUID).
	Issuer  string
	Subject string
	// PersonID is the person in the trust directory the subject maps to
	// ("" when the subject maps to none).
	PersonID    string
	DisplayName string
	// ACR is the authentication assurance level the provider asserted.
	ACR string
	// Roles are the person's roles per trust ODS code; AllTrusts for a
	// network-wide binding.
	Roles map[string][]Role
	// TokenID is the access token's id (jti) when the issuer gives one:
	// commands record it, tying Herald's record to the issuer's.
	TokenID string
	// Email is the token's email claim ("" if none): role bindings may
	// name a person by it (platform/authz).
	Email string
	// RoleClaims are the token's role claim values (for CIS2 the
	// nhsid_nrbac_roles role codes): role bindings may grant roles to
	// everyone holding one (platform/authz).
	RoleClaims []string
}

// Has reports whether the person holds role r for trust, directly or
// through a network-wide binding.
func (p *Person) Has(trust string, r Role) bool {
	if p == nil {
		return false
	}
	return slices.Contains(p.Roles[trust], r) || slices.Contains(p.Roles[AllTrusts], r)
}

// NetworkWide reports whether the person holds any network-wide role.
func (p *Person) NetworkWide() bool {
	return p != nil && len(p.Roles[AllTrusts]) > 0
}

// Trusts returns the trusts the person holds any role for, sorted, without
// AllTrusts.
func (p *Person) Trusts() []string {
	if p == nil {
		return nil
	}
	var out []string
	for trust, roles := range p.Roles {
		if trust != AllTrusts && len(roles) > 0 {
			out = append(out, trust)
		}
	}
	slices.Sort(out)
	return out
}

// Caller is who made a call: the person it was made for, if any, and the
// service that relayed it, if any.
type Caller struct {
	// Person is nil for a service acting on its own account.
	Person *Person
	// Service is the identity from the verified client certificate (its
	// first URI SAN, a SPIFFE ID, or else its first DNS SAN); "" if none.
	Service string
}

type contextKey struct{}

// NewContext returns ctx carrying c.
func NewContext(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, contextKey{}, c)
}

// FromContext returns the caller in ctx; ok is false when authentication
// put none there.
func FromContext(ctx context.Context) (c Caller, ok bool) {
	c, ok = ctx.Value(contextKey{}).(Caller)
	return c, ok
}
