package identity

import (
	"context"
	"testing"
)

func TestPersonRolesPerTrust(t *testing.T) {
	p := &Person{Roles: map[string][]Role{
		"RXF":     {RoleClinician},
		"R0A":     {RoleFailsafeOfficer},
		AllTrusts: {RoleSafetyLead},
	}}
	cases := []struct {
		trust string
		role  Role
		want  bool
	}{
		{"RXF", RoleClinician, true},
		{"R0A", RoleClinician, false},
		{"R0A", RoleFailsafeOfficer, true},
		{"RXF", RoleFailsafeOfficer, false},
		{"ZZZ", RoleSafetyLead, true}, // network-wide
		{"ZZZ", RoleClinician, false},
	}
	for _, c := range cases {
		if got := p.Has(c.trust, c.role); got != c.want {
			t.Errorf("Has(%q, %q) = %v, want %v", c.trust, c.role, got, c.want)
		}
	}
	if got := p.Trusts(); len(got) != 2 || got[0] != "R0A" || got[1] != "RXF" {
		t.Errorf("Trusts() = %v, want [R0A RXF]", got)
	}
	if !p.NetworkWide() {
		t.Error("NetworkWide() = false for a person with a network-wide binding")
	}
	var none *Person
	if none.Has("RXF", RoleClinician) || none.NetworkWide() || none.Trusts() != nil {
		t.Error("a nil person holds nothing")
	}
}

func TestCallerTravelsInTheContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("an empty context has no caller")
	}
	want := Caller{Person: &Person{Subject: "s-1"}, Service: "spiffe://herald/console"}
	got, ok := FromContext(NewContext(context.Background(), want))
	if !ok || got.Service != want.Service || got.Person.Subject != "s-1" {
		t.Fatalf("FromContext = %+v, %v", got, ok)
	}
}
