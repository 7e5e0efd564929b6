package devidp

import (
	"strings"

	"github.com/herald-health/herald/platform/identity"
)

// User is a person the development provider can sign in.
type User struct {
	// Subject is the person's id at the provider (what they type or pick
	// on the login page, and the token's sub).
	Subject string
	Name    string
	// PersonID is the person's id in Herald's trust directory.
	PersonID string
	// Roles are "TRUST:role" strings ("*:role" network-wide).
	Roles []string
}

// Demo trusts and their people in the demo bundles
// (services/rules/bundles/demo).
var demoPeople = map[string]map[identity.Role][2]string{
	"RZZ": {
		identity.RoleClinician:       {"rzz-dr-ashworth", "Dr Ada Ashworth"},
		identity.RoleFailsafeOfficer: {"rzz-fso-patel", "Sam Patel (fail-safe officer)"},
		identity.RoleSafetyLead:      {"rzz-safety-lead-morgan", "Dr Morgan (clinical safety lead)"},
		identity.RolePolicyAdmin:     {"rzz-policy-admin-iqbal", "Ana Iqbal (policy administrator)"},
		identity.RoleOperator:        {"rzz-operator-wood", "Lee Wood (operator)"},
	},
	"RZY": {
		identity.RoleClinician:       {"rzy-dr-khan", "Dr Kamal Khan"},
		identity.RoleFailsafeOfficer: {"rzy-fso-quinn", "Jo Quinn (fail-safe officer)"},
		identity.RoleSafetyLead:      {"rzy-safety-lead-reid", "Dr Reid (clinical safety lead)"},
		identity.RolePolicyAdmin:     {"rzy-policy-admin-shah", "Nia Shah (policy administrator)"},
		identity.RoleOperator:        {"rzy-operator-hill", "Kit Hill (operator)"},
	},
}

// DemoUsers are the demo people of `make run`: for each of the demo trusts
// RZZ and RZY a clinician, a fail-safe officer, a clinical safety lead, a
// policy administrator and an operator, each signing in as their Herald
// person id.
func DemoUsers() []User {
	var out []User
	for _, trust := range []string{"RZZ", "RZY"} {
		for _, role := range []identity.Role{identity.RoleClinician, identity.RoleFailsafeOfficer, identity.RoleSafetyLead, identity.RolePolicyAdmin, identity.RoleOperator} {
			p := demoPeople[trust][role]
			out = append(out, User{Subject: p[0], Name: p[1], PersonID: p[0], Roles: []string{trust + ":" + string(role)}})
		}
	}
	return out
}

// Person returns a user who is person id in trust with the given roles
// (for tests: Subject and PersonID are id).
func Person(id, trust string, roles ...identity.Role) User {
	u := User{Subject: id, Name: id, PersonID: id}
	for _, r := range roles {
		u.Roles = append(u.Roles, trust+":"+string(r))
	}
	return u
}

// Label names the user and their roles (the login page's and the
// console's development sign-in lists).
func (u User) Label() string {
	return u.Name + " — " + strings.Join(u.Roles, ", ")
}
