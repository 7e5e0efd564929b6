package authz

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/identity"
)

const sampleBindings = `
trusts:
  RXA:
    - subject: clinician-a
      person: dr-a
      roles: [clinician]
    - email: FSO@Trust-A.example
      person: fso-a
      roles: [failsafe-officer]
    - role_claim: "R8000"
      roles: [clinician]
    - subject: issuer-bound
      issuer: https://idp.example
      person: dr-x
      roles: [operator]
  RXB:
    - subject: clinician-a
      person: dr-a-at-b
      roles: [safety-lead]
  "*":
    - subject: safety-lead
      person: sl
      roles: [safety-lead]
services:
  - identity: spiffe://herald.dev/ns/herald/sa/lab-a
    roles: {RXA: [integration-sender]}
`

func TestBindMapsSubjectsEmailsAndClaimsToRolesPerTrust(t *testing.T) {
	b, err := Parse([]byte(sampleBindings), false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		name   string
		p      identity.Person
		person string
		roles  map[string][]identity.Role
	}{
		{"subject, two trusts", identity.Person{Subject: "clinician-a"}, "dr-a",
			map[string][]identity.Role{"RXA": {identity.RoleClinician}, "RXB": {identity.RoleSafetyLead}}},
		{"email, case-insensitive", identity.Person{Subject: "x", Email: "fso@trust-a.example"}, "fso-a",
			map[string][]identity.Role{"RXA": {identity.RoleFailsafeOfficer}}},
		{"role claim, no person id", identity.Person{Subject: "y", RoleClaims: []string{"R9999", "R8000"}}, "",
			map[string][]identity.Role{"RXA": {identity.RoleClinician}}},
		{"network-wide", identity.Person{Subject: "safety-lead"}, "sl",
			map[string][]identity.Role{identity.AllTrusts: {identity.RoleSafetyLead}}},
		{"issuer must match when given", identity.Person{Subject: "issuer-bound", Issuer: "https://other.example"}, "", map[string][]identity.Role{}},
		{"issuer matches", identity.Person{Subject: "issuer-bound", Issuer: "https://idp.example"}, "dr-x",
			map[string][]identity.Role{"RXA": {identity.RoleOperator}}},
		{"unknown subject: no roles, no error", identity.Person{Subject: "stranger"}, "", map[string][]identity.Role{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			p.Roles = map[string][]identity.Role{"RXA": {identity.RoleOperator}} // a token's own claims never count
			if err := b.Bind(ctx, &p); err != nil {
				t.Fatal(err)
			}
			if p.PersonID != c.person {
				t.Errorf("PersonID = %q, want %q", p.PersonID, c.person)
			}
			if len(p.Roles) != len(c.roles) {
				t.Fatalf("Roles = %v, want %v", p.Roles, c.roles)
			}
			for trust, want := range c.roles {
				if !slices.Equal(p.Roles[trust], want) {
					t.Errorf("Roles[%s] = %v, want %v", trust, p.Roles[trust], want)
				}
			}
		})
	}
	if _, ok := b.Service("spiffe://herald.dev/ns/herald/sa/lab-a"); !ok {
		t.Error("service binding not found")
	}
	if _, ok := b.Service("spiffe://herald.dev/ns/herald/sa/other"); ok {
		t.Error("an unbound service identity is bound")
	}
}

func TestParseNamesTheEntryAtFault(t *testing.T) {
	cases := map[string]string{
		"trusts: {RXA: [{subject: a, roles: [surgeon]}]}":                                                                  `trusts.RXA[0].roles: unknown role "surgeon"`,
		"trusts: {RXA: [{subject: a, email: b, roles: [clinician]}]}":                                                      "trusts.RXA[0]: exactly one of subject, email and role_claim",
		"trusts: {RXA: [{person: a, roles: [clinician]}]}":                                                                 "trusts.RXA[0]: exactly one of subject, email and role_claim",
		"trusts: {RXA: [{subject: a}]}":                                                                                    "trusts.RXA[0].roles: at least one role",
		"trusts: {'R X': [{subject: a, roles: [clinician]}]}":                                                              "is not an ODS code",
		"trusts: {RXA: [{subject: a, roles: [clinician], typo: 1}]}":                                                       "field typo not found",
		"services: [{roles: {RXA: [integration-sender]}}]":                                                                 "services[0].identity: is required",
		"services: [{identity: tool, roles: {'*': [operator]}}]":                                                           "role operator is refused for a service identity in the production profile",
		"services: [{identity: a, roles: {RXA: [integration-sender]}}, {identity: a, roles: {RXA: [integration-sender]}}]": "bound twice",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in), false)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v, want an error containing %q", in, err, want)
		}
	}
	// Development tools may be bound to any role in development only.
	if _, err := Parse([]byte("services: [{identity: tool, person: tool, roles: {'*': [operator, failsafe-officer]}}]"), true); err != nil {
		t.Errorf("development service binding refused: %v", err)
	}
	if _, err := Parse(nil, false); err != nil {
		t.Errorf("an empty file binds nobody, it is not an error: %v", err)
	}
}

func TestSourceReloadsAChangedFileAndKeepsTheLastGoodOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bindings.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("trusts: {RXA: [{subject: a, person: dr-a, roles: [clinician]}]}")
	clk := clock.NewSimulated(time.Unix(1_800_000_000, 0))
	src, err := Load(path, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	roleOf := func(sub string) []identity.Role {
		p := &identity.Person{Subject: sub}
		if err := src.Bind(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		return p.Roles["RXA"]
	}
	if got := roleOf("a"); !slices.Equal(got, []identity.Role{identity.RoleClinician}) {
		t.Fatalf("roles of a = %v", got)
	}
	// The change is picked up at the next look (the file's size changes,
	// so no file-system time resolution matters).
	write("trusts: {RXA: [{subject: a, person: dr-a, roles: [failsafe-officer]}, {subject: b, roles: [clinician]}]}")
	clk.Advance(DefaultCheckEvery)
	if got := roleOf("a"); !slices.Equal(got, []identity.Role{identity.RoleFailsafeOfficer}) {
		t.Fatalf("after the change, roles of a = %v", got)
	}
	// A broken change keeps the last good bindings.
	write("trusts: {RXA: [{subject: a, roles: [nonsense-role-that-is-long]}]}")
	clk.Advance(DefaultCheckEvery)
	if got := roleOf("b"); !slices.Equal(got, []identity.Role{identity.RoleClinician}) {
		t.Fatalf("after a broken change, roles of b = %v", got)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), Options{}); err == nil || !strings.Contains(err.Error(), "role-bindings-file") {
		t.Errorf("a missing file: %v, want an error naming the setting", err)
	}
}
