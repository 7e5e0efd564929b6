// Package access holds Herald's authorization decisions (issue #20) as pure
// functions: given who is calling (identity.Person, identity.Caller) and the
// facts of what they ask about (a trust, an alert's recipients), may they?
// No I/O and no clock: the gRPC interceptor (platform/authz) and the
// services' handlers gather the facts and call these.
//
// The rules, in one place (docs/authorization.md explains them):
//   - a trust's data is read only by a person holding a reading role for
//     that trust, or a network-wide one; an empty trust in a list means
//     "the caller's trusts", never "all", unless the caller is network-wide;
//   - an alert is acknowledged, declined, actioned or marked read only by a
//     person it was sent to (a recipient) who is a clinician or fail-safe
//     officer of its trust, or by a fail-safe officer of its trust, whose
//     role covers every recipient (the fail-safe team answers for the
//     trust's unanswered alerts);
//   - an alert is read (opened: its state, timeline and, for its clinicians
//     and fail-safe officers, its patient details) by any person holding a
//     reading role for its trust, recipient or not: a clinician sees their
//     own alerts and their team's (DecideRead). Reading is not marking read:
//     the MarkRead command (the alert was read by someone it was sent to,
//     which meets the communicate-by obligation) stays a recipient's;
//   - an alert is closed only by a fail-safe officer of its trust;
//   - staff contact details (phone numbers, email addresses) go only to the
//     notification service and to operators and policy administrators of
//     the trust.
package access

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/identity"
)

// Roles, short.
const (
	Clinician         = identity.RoleClinician
	FailsafeOfficer   = identity.RoleFailsafeOfficer
	SafetyLead        = identity.RoleSafetyLead
	PolicyAdmin       = identity.RolePolicyAdmin
	IntegrationSender = identity.RoleIntegrationSender
	Operator          = identity.RoleOperator
)

// AllRoles are Herald's roles, in the order documentation lists them.
var AllRoles = []identity.Role{Clinician, FailsafeOfficer, SafetyLead, PolicyAdmin, IntegrationSender, Operator}

// AlertReaders are the roles that may read a trust's alerts and their
// notifications.
var AlertReaders = []identity.Role{Clinician, FailsafeOfficer, SafetyLead, Operator}

// ServiceNotification is the Herald service that may read staff contact
// details (it sends the messages).
const ServiceNotification = "notification"

// HasAny reports whether p holds any of roles for trust (directly or
// network-wide).
func HasAny(p *identity.Person, trust string, roles ...identity.Role) bool {
	for _, r := range roles {
		if p.Has(trust, r) {
			return true
		}
	}
	return false
}

// HoldsAnywhere reports whether p holds any of roles for some trust.
func HoldsAnywhere(p *identity.Person, roles ...identity.Role) bool {
	if p == nil {
		return false
	}
	for _, held := range p.Roles {
		for _, r := range roles {
			if slices.Contains(held, r) {
				return true
			}
		}
	}
	return false
}

// Scope is a set of trusts a caller may read: every trust (All) or the
// ones listed. The zero Scope is empty: nothing.
type Scope struct {
	All    bool
	Trusts []string
}

// Includes reports whether trust is in the scope.
func (s Scope) Includes(trust string) bool {
	return s.All || slices.Contains(s.Trusts, trust)
}

// Empty reports whether the scope holds no trust.
func (s Scope) Empty() bool { return !s.All && len(s.Trusts) == 0 }

// ReadScope is every trust p holds one of roles for: all of them when p
// holds one network-wide.
func ReadScope(p *identity.Person, roles ...identity.Role) Scope {
	if p == nil {
		return Scope{}
	}
	for _, r := range roles {
		if slices.Contains(p.Roles[identity.AllTrusts], r) {
			return Scope{All: true}
		}
	}
	var out []string
	for _, trust := range p.Trusts() {
		if HasAny(p, trust, roles...) {
			out = append(out, trust)
		}
	}
	return Scope{Trusts: out}
}

// ListScope is what a list or stream asking for requested ("" for no
// trust named) returns to p: the trusts p reads when requested is empty
// ("my trusts"; every trust only for a network-wide reader), requested
// alone when p reads it, and nothing otherwise (another trust's list is
// empty, not an error, so that it says nothing about that trust).
func ListScope(p *identity.Person, requested string, roles ...identity.Role) Scope {
	all := ReadScope(p, roles...)
	if requested == "" {
		return all
	}
	if all.Includes(requested) {
		return Scope{Trusts: []string{requested}}
	}
	return Scope{}
}

// Command is a command on an alert.
type Command int

// The commands on an alert.
const (
	Acknowledge Command = iota + 1
	Decline
	RecordAction
	MarkRead
	Close
)

func (c Command) String() string {
	switch c {
	case Acknowledge:
		return "acknowledge"
	case Decline:
		return "decline"
	case RecordAction:
		return "record an action on"
	case MarkRead:
		return "mark read"
	case Close:
		return "close"
	}
	return fmt.Sprintf("command %d", int(c))
}

// Alert is what a decision needs to know of an alert.
type Alert struct {
	ID     string
	Tenant string
	// Recipients are the people the alert was routed or escalated to (the
	// person ids of its notifications and of its resolved steps).
	Recipients []string
}

// RecipientRoles are the roles a recipient must hold for the alert's
// trust to act on it.
var RecipientRoles = []identity.Role{Clinician, FailsafeOfficer}

// DecideCommand decides whether p may perform cmd on a. The error is
// fault.ErrPermissionDenied and says why (naming the alert and trust, never
// the patient).
func DecideCommand(p *identity.Person, cmd Command, a Alert) error {
	if p == nil {
		return fault.Unauthenticated(fmt.Sprintf("%s alert %s: no verified person", cmd, a.ID))
	}
	if cmd == Close {
		if p.Has(a.Tenant, FailsafeOfficer) {
			return nil
		}
		return fault.PermissionDenied(fmt.Sprintf("close alert %s: only a %s of trust %s may close it", a.ID, FailsafeOfficer, a.Tenant))
	}
	if !HasAny(p, a.Tenant, AllRoles...) {
		return fault.PermissionDenied(fmt.Sprintf("%s alert %s: the caller holds no role for trust %s", cmd, a.ID, a.Tenant))
	}
	if p.Has(a.Tenant, FailsafeOfficer) {
		return nil // the fail-safe team covers every recipient of its trust
	}
	if p.PersonID != "" && slices.Contains(a.Recipients, p.PersonID) && HasAny(p, a.Tenant, RecipientRoles...) {
		return nil
	}
	return fault.PermissionDenied(fmt.Sprintf("%s alert %s: only a recipient of the alert (a %s or %s of trust %s) or a %s of the trust may",
		cmd, a.ID, Clinician, FailsafeOfficer, a.Tenant, FailsafeOfficer))
}

// DecideRead decides whether p may read a: a person holding a reading role
// (AlertReaders) for the alert's trust, directly or network-wide, whether
// or not the alert was sent to them. A clinician of the trust reads the
// alerts of their colleagues (the worklist's "my team's"): the role-binding
// file knows trusts, not teams, so the team a clinician reads is their
// trust's clinical staff. Another trust's alert, or a caller holding only a
// non-reading role (a policy administrator, a sending system), is refused.
// The error is fault.ErrPermissionDenied naming the alert and trust.
func DecideRead(p *identity.Person, a Alert) error {
	if HasAny(p, a.Tenant, AlertReaders...) { // a nil person holds nothing
		return nil
	}
	return fault.PermissionDenied(fmt.Sprintf("alert %s belongs to trust %s, for which the caller holds no reading role", a.ID, a.Tenant))
}

// AuditExporters are the roles that may download an alert's evidential
// record (the audit export): the trust's clinical safety and fail-safe
// people.
var AuditExporters = []identity.Role{SafetyLead, FailsafeOfficer}

// DecideAuditExport decides whether p may download the evidential record
// of an alert of trust (AcknowledgementService.ExportAudit): a safety lead
// or fail-safe officer of that trust, or network-wide.
func DecideAuditExport(p *identity.Person, alertID, trust string) error {
	if HasAny(p, trust, AuditExporters...) {
		return nil
	}
	return fault.PermissionDenied(fmt.Sprintf("the evidential record of alert %s is for the %s and %s of trust %s", alertID, SafetyLead, FailsafeOfficer, trust))
}

// ContactDetails reports whether c may see the contact details (phone
// numbers, email addresses) of trust's staff: the notification service,
// and operators and policy administrators of that trust.
func ContactDetails(c identity.Caller, trust string) bool {
	if c.Person == nil && ServiceName(c.Service) == ServiceNotification {
		return true
	}
	return HasAny(c.Person, trust, Operator, PolicyAdmin)
}

// ServiceName is the Herald service a certificate identity names: the
// last segment of a SPIFFE ID spiffe://<domain>/ns/herald/sa/<name>, or a
// DNS name <name> or <name>.herald.svc[.<cluster domain>]. Anything else
// is "" (not a Herald service).
func ServiceName(id string) string {
	if id == "" {
		return ""
	}
	if strings.HasPrefix(id, "spiffe://") {
		u, err := url.Parse(id)
		if err != nil {
			return ""
		}
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if len(parts) == 4 && parts[0] == "ns" && parts[1] == "herald" && parts[2] == "sa" {
			return parts[3]
		}
		return ""
	}
	if strings.Contains(id, ":") {
		return ""
	}
	name, rest, dotted := strings.Cut(id, ".")
	if !dotted || strings.HasPrefix(rest, "herald.svc") && (rest == "herald.svc" || strings.HasPrefix(rest, "herald.svc.")) {
		return name
	}
	return ""
}
