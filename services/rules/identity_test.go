package rules_test

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/identity"
)

// The people of the tests. Authentication is another piece of work: here a
// test interceptor puts the person named in the call's metadata into the
// context, as the real one will from a verified token.
var (
	// alice administers RZY's and RZZ's policy.
	alice = identity.Person{Issuer: "https://idp.test", Subject: "alice", PersonID: "rzy-alice",
		Roles: map[string][]identity.Role{"RZY": {identity.RolePolicyAdmin}, "RZZ": {identity.RolePolicyAdmin}}}
	// carol is a safety lead of RZY and RZZ.
	carol = identity.Person{Issuer: "https://idp.test", Subject: "carol", PersonID: "rzy-carol",
		Roles: map[string][]identity.Role{"RZY": {identity.RoleSafetyLead}, "RZZ": {identity.RoleSafetyLead}}}
	// bob is a clinician of RZY: no policy role.
	bob = identity.Person{Issuer: "https://idp.test", Subject: "bob", PersonID: "rzy-bob",
		Roles: map[string][]identity.Role{"RZY": {identity.RoleClinician}}}
	// alice2 is alice with a second account at another provider.
	alice2 = identity.Person{Issuer: "https://other-idp.test", Subject: "a.s", PersonID: "rzy-alice",
		Roles: map[string][]identity.Role{"RZY": {identity.RoleSafetyLead}}}
)

var people = map[string]identity.Person{"alice": alice, "carol": carol, "bob": bob, "alice2": alice2}

const personKey = "x-test-person"

// nobody names a call made with no person in it.
const nobody = "nobody"

// asNobody returns ctx calling with no person.
func asNobody(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, personKey, nobody)
}

// as returns ctx calling as p.
func as(ctx context.Context, p identity.Person) context.Context {
	for name, q := range people {
		if q.Issuer == p.Issuer && q.Subject == p.Subject {
			return metadata.AppendToOutgoingContext(ctx, personKey, name)
		}
	}
	panic("unknown test person " + p.Subject)
}

// testIdentity puts the person named in the metadata into the context.
func testIdentity() grpcserver.Option {
	return grpcserver.WithInterceptors([]grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if names := md.Get(personKey); len(names) == 1 {
			if names[0] == nobody {
				// a service's call with no person (authorization switched
				// off in development would otherwise make it the all-roles
				// development caller)
				ctx = identity.NewContext(ctx, identity.Caller{Service: "test"})
			} else if p, ok := people[strings.TrimSpace(names[0])]; ok {
				ctx = identity.NewContext(ctx, identity.Caller{Person: &p, Service: "test"})
			}
		}
		return h(ctx, req)
	}}, nil)
}
