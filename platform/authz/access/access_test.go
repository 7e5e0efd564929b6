package access

import (
	"errors"
	"slices"
	"testing"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/identity"
)

func person(id string, roles map[string][]identity.Role) *identity.Person {
	return &identity.Person{Subject: "sub-" + id, PersonID: id, Roles: roles}
}

var (
	clinicianA = person("dr-a", map[string][]identity.Role{"RXA": {Clinician}})
	otherA     = person("dr-a2", map[string][]identity.Role{"RXA": {Clinician}})
	failsafeA  = person("fso-a", map[string][]identity.Role{"RXA": {FailsafeOfficer}})
	clinicianB = person("dr-b", map[string][]identity.Role{"RXB": {Clinician}})
	// dr-b is a recipient's id in trust A's directory too, but holds no role there.
	twoTrusts   = person("dr-ab", map[string][]identity.Role{"RXA": {Clinician}, "RXB": {SafetyLead}})
	safetyLead  = person("sl", map[string][]identity.Role{identity.AllTrusts: {SafetyLead}})
	operatorA   = person("op-a", map[string][]identity.Role{"RXA": {Operator}})
	policyAdmin = person("pa-a", map[string][]identity.Role{"RXA": {PolicyAdmin}})
	unbound     = person("", nil)
)

func TestDecideCommand(t *testing.T) {
	alert := Alert{ID: "al-1", Tenant: "RXA", Recipients: []string{"dr-a", "dr-b"}}
	cases := []struct {
		name string
		p    *identity.Person
		cmd  Command
		ok   bool
	}{
		{"recipient clinician acknowledges", clinicianA, Acknowledge, true},
		{"recipient clinician declines", clinicianA, Decline, true},
		{"recipient clinician records an action", clinicianA, RecordAction, true},
		{"recipient clinician marks read", clinicianA, MarkRead, true},
		{"a clinician of the trust who is no recipient cannot acknowledge", otherA, Acknowledge, false},
		{"a recipient id of another trust cannot acknowledge", clinicianB, Acknowledge, false},
		{"a fail-safe officer of the trust covers every recipient", failsafeA, Acknowledge, true},
		{"a fail-safe officer of the trust declines for the team", failsafeA, Decline, true},
		{"a recipient clinician cannot close", clinicianA, Close, false},
		{"a fail-safe officer of the trust closes", failsafeA, Close, true},
		{"a network-wide safety lead cannot acknowledge", safetyLead, Acknowledge, false},
		{"a network-wide safety lead cannot close", safetyLead, Close, false},
		{"an operator cannot acknowledge", operatorA, Acknowledge, false},
		{"a person with no roles cannot acknowledge", unbound, Acknowledge, false},
		{"no person cannot acknowledge", nil, Acknowledge, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := DecideCommand(c.p, c.cmd, alert)
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok {
				if err == nil {
					t.Fatal("allowed")
				}
				if !errors.Is(err, fault.ErrPermissionDenied) && !errors.Is(err, fault.ErrUnauthenticated) {
					t.Fatalf("error %v is not PermissionDenied", err)
				}
			}
		})
	}
	// A person of trust B whose directory id happens to be a recipient of
	// trust A's alert is still refused: roles are per trust.
	b := person("dr-b", map[string][]identity.Role{"RXB": {FailsafeOfficer}})
	if err := DecideCommand(b, Close, alert); err == nil {
		t.Error("a fail-safe officer of trust B closed trust A's alert")
	}
	if err := DecideCommand(b, Acknowledge, alert); err == nil {
		t.Error("a fail-safe officer of trust B acknowledged trust A's alert")
	}
	// A network-wide fail-safe officer covers every trust.
	nw := person("fso-net", map[string][]identity.Role{identity.AllTrusts: {FailsafeOfficer}})
	if err := DecideCommand(nw, Close, alert); err != nil {
		t.Errorf("network-wide fail-safe officer refused: %v", err)
	}
}

// TestDecideRead: a clinician of the trust reads an alert sent to a
// colleague (their team's), but may not mark it read, acknowledge or
// decline it; another trust's clinician and non-reading roles read nothing.
func TestDecideRead(t *testing.T) {
	alert := Alert{ID: "al-1", Tenant: "RXA", Recipients: []string{"dr-a"}}
	cases := []struct {
		name string
		p    *identity.Person
		ok   bool
	}{
		{"the recipient clinician", clinicianA, true},
		{"a clinician of the trust who was not sent it (the team's alert)", otherA, true},
		{"a fail-safe officer of the trust", failsafeA, true},
		{"a network-wide safety lead", safetyLead, true},
		{"an operator of the trust", operatorA, true},
		{"a clinician of another trust", clinicianB, false},
		{"a policy administrator of the trust (not a reading role)", policyAdmin, false},
		{"a person with no roles", unbound, false},
		{"no person", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := DecideRead(c.p, alert)
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && (err == nil || !errors.Is(err, fault.ErrPermissionDenied) && !errors.Is(err, fault.ErrUnauthenticated)) {
				t.Fatalf("got %v, want a refusal", err)
			}
		})
	}
	// Reading is not acting: the team's clinician still may not mark it
	// read (that meets the communicate-by obligation), acknowledge or
	// decline it.
	for _, cmd := range []Command{MarkRead, Acknowledge, Decline, RecordAction} {
		if err := DecideCommand(otherA, cmd, alert); err == nil {
			t.Errorf("a clinician who reads a colleague's alert may %s it", cmd)
		}
	}
}

// TestDecideAuditExport: the evidential record of an alert goes to the
// safety leads and fail-safe officers of its trust (or network-wide), not
// to its clinicians, operators or another trust.
func TestDecideAuditExport(t *testing.T) {
	for _, c := range []struct {
		name string
		p    *identity.Person
		ok   bool
	}{
		{"a network-wide safety lead", safetyLead, true},
		{"a fail-safe officer of the trust", failsafeA, true},
		{"a clinician of the trust", clinicianA, false},
		{"an operator of the trust", operatorA, false},
		{"a safety lead of another trust", person("sl-b", map[string][]identity.Role{"RXB": {SafetyLead}}), false},
		{"no person", nil, false},
	} {
		err := DecideAuditExport(c.p, "al-1", "RXA")
		if (err == nil) != c.ok {
			t.Errorf("%s: got %v, want allowed %v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, fault.ErrPermissionDenied) {
			t.Errorf("%s: %v is not PermissionDenied", c.name, err)
		}
	}
}

func TestListScope(t *testing.T) {
	cases := []struct {
		name      string
		p         *identity.Person
		requested string
		all       bool
		trusts    []string
	}{
		{"no trust named: the caller's trusts", twoTrusts, "", false, []string{"RXA", "RXB"}},
		{"no trust named, one trust", clinicianA, "", false, []string{"RXA"}},
		{"own trust named", clinicianA, "RXA", false, []string{"RXA"}},
		{"another trust named: nothing", clinicianA, "RXB", false, nil},
		{"network-wide reader, no trust named: every trust", safetyLead, "", true, nil},
		{"network-wide reader names a trust", safetyLead, "RXB", false, []string{"RXB"}},
		{"policy admin reads no alerts", policyAdmin, "", false, nil},
		{"no person: nothing", nil, "", false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ListScope(c.p, c.requested, AlertReaders...)
			if got.All != c.all || !slices.Equal(got.Trusts, c.trusts) {
				t.Fatalf("ListScope = %+v, want all=%v trusts=%v", got, c.all, c.trusts)
			}
			if c.all != got.Includes("ZZZ") {
				t.Fatalf("Includes(ZZZ) = %v", got.Includes("ZZZ"))
			}
		})
	}
	if !(Scope{}).Empty() || (Scope{All: true}).Empty() {
		t.Error("Empty is wrong")
	}
}

func TestContactDetails(t *testing.T) {
	cases := []struct {
		name   string
		caller identity.Caller
		trust  string
		want   bool
	}{
		{"the notification service", identity.Caller{Service: "spiffe://herald.dev/ns/herald/sa/notification"}, "RXA", true},
		{"the notification service by DNS name", identity.Caller{Service: "notification.herald.svc.cluster.local"}, "RXA", true},
		{"another service", identity.Caller{Service: "spiffe://herald.dev/ns/herald/sa/intake"}, "RXA", false},
		{"a look-alike outside the herald namespace", identity.Caller{Service: "spiffe://herald.dev/ns/other/sa/notification"}, "RXA", false},
		{"an operator of the trust", identity.Caller{Person: operatorA}, "RXA", true},
		{"a policy admin of the trust", identity.Caller{Person: policyAdmin}, "RXA", true},
		{"an operator of another trust", identity.Caller{Person: operatorA}, "RXB", false},
		{"a clinician", identity.Caller{Person: clinicianA}, "RXA", false},
		{"a fail-safe officer", identity.Caller{Person: failsafeA}, "RXA", false},
		{"a person relayed by notification is judged as the person", identity.Caller{Person: clinicianA, Service: "spiffe://herald.dev/ns/herald/sa/notification"}, "RXA", false},
		{"nobody", identity.Caller{}, "RXA", false},
	}
	for _, c := range cases {
		if got := ContactDetails(c.caller, c.trust); got != c.want {
			t.Errorf("%s: ContactDetails = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestServiceName(t *testing.T) {
	cases := map[string]string{
		"spiffe://herald.dev/ns/herald/sa/notification":      "notification",
		"spiffe://prod.example/ns/herald/sa/rules":           "rules",
		"spiffe://herald.dev/ns/herald/sa/rules/extra":       "",
		"spiffe://herald.dev/ns/kube-system/sa/notification": "",
		"notification":                          "notification",
		"notification.herald.svc":               "notification",
		"notification.herald.svc.cluster.local": "notification",
		"notification.evil.example":             "",
		"notification.herald.svcx":              "",
		"":                                      "",
		"https://x/y":                           "",
	}
	for id, want := range cases {
		if got := ServiceName(id); got != want {
			t.Errorf("ServiceName(%q) = %q, want %q", id, got, want)
		}
	}
}
