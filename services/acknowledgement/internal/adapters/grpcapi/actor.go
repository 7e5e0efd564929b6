package grpcapi

import (
	"context"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/identity"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// rolePrecedence orders the roles an actor record names when the person
// holds several for the alert's trust: the one that answers for the alert
// most directly first.
var rolePrecedence = []identity.Role{
	identity.RoleFailsafeOfficer, identity.RoleClinician, identity.RoleSafetyLead,
	identity.RolePolicyAdmin, identity.RoleOperator,
}

// actor is who makes a command: the person of the verified access token
// (platform/authn put them in ctx), never a request field (the requests'
// actor fields are reserved). The role recorded is one the person holds
// for the alert's trust, which the command learns from the alert's state
// (roleFor): so Close, which needs a fail-safe officer, needs one of that
// trust. A service calling on its own account cannot make a command:
// commands are a person's.
func actor(ctx context.Context) (*eventsv1.Actor, func(tenant string) string, error) {
	c, ok := identity.FromContext(ctx)
	if !ok {
		return nil, nil, fault.Unauthenticated("no verified caller: a command needs the person's OpenID Connect access token")
	}
	p := c.Person
	if p == nil {
		return nil, nil, fault.PermissionDenied("a command on an alert is made for a person: the call carried no person's access token")
	}
	if p.PersonID == "" {
		return nil, nil, fault.PermissionDenied("subject " + p.Subject + " of " + p.Issuer + " is bound to no Herald person")
	}
	a := &eventsv1.Actor{PersonId: p.PersonID, DisplayName: p.DisplayName, IdentityProvider: "oidc",
		Issuer: p.Issuer, Subject: p.Subject, Acr: p.ACR, RelayedBy: c.Service, TokenId: p.TokenID}
	roleFor := func(tenant string) string {
		for _, r := range rolePrecedence {
			if p.Has(tenant, r) {
				return string(r)
			}
		}
		return ""
	}
	return a, roleFor, nil
}
