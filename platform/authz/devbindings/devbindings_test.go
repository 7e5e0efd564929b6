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
	tools, err := authz.Parse(Bindings(true), true)
	if err != nil {
		t.Fatal(err)
	}
	// heraldctl's and the e2e harness's certificates raise and read;
	// acting on an alert or a policy needs a person signed in. The console
	// is bound to nothing: it calls with the signed-in person's token.
	for _, tool := range []string{"heraldctl", "e2e"} {
		ctl, ok := tools.Service("spiffe://herald.dev/ns/herald/sa/" + tool)
		if !ok || !ctl.Has("RZZ", identity.RoleIntegrationSender) || !ctl.Has("RZZ", identity.RoleOperator) {
			t.Fatalf("%s's certificate: %+v (bound %v), want integration-sender and operator", tool, ctl, ok)
		}
		for _, r := range []identity.Role{identity.RoleClinician, identity.RoleFailsafeOfficer, identity.RolePolicyAdmin, identity.RoleSafetyLead} {
			if ctl.Has("RZZ", r) {
				t.Errorf("%s's certificate alone holds %s: an unsigned command would act", tool, r)
			}
		}
	}
	if _, ok := tools.Service("spiffe://herald.dev/ns/herald/sa/console"); ok {
		t.Error("the console's certificate is bound to roles: it calls with people's tokens")
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
