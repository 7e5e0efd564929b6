package devbindings

import (
	"context"
	"testing"

	"github.com/herald-health/herald/platform/authz"
	"github.com/herald-health/herald/platform/identity"
)

func TestDevelopmentBindingsLoad(t *testing.T) {
	if _, err := authz.Parse(Bindings(true), true); err != nil {
		t.Fatalf("with tools, development: %v", err)
	}
	if _, err := authz.Parse(Bindings(true), false); err == nil {
		t.Fatal("the tools' all-role bindings were accepted in the production profile")
	}
	b, err := authz.Parse(Bindings(false), false)
	if err != nil {
		t.Fatalf("people only, production: %v", err)
	}
	p := &identity.Person{Subject: "failsafe-b"}
	if err := b.Bind(context.Background(), p); err != nil || !p.Has("RZY", identity.RoleFailsafeOfficer) || p.Has("RZZ", identity.RoleFailsafeOfficer) {
		t.Fatalf("failsafe-b: %+v, %v", p, err)
	}
	if _, ok := b.Service("spiffe://herald.dev/ns/herald/sa/e2e"); ok {
		t.Fatal("people only still binds a tool")
	}
}
