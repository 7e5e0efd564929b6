package authz

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"github.com/herald-health/herald/platform/authz/access"
	"github.com/herald-health/herald/platform/identity"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
	notificationv1 "github.com/herald-health/herald/proto/gen/herald/notification/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
)

// Trust says where a method's per-trust check is made.
type Trust int

// Where the per-trust check is made.
const (
	// TrustNone: the method touches no trust's data.
	TrustNone Trust = iota
	// TrustRequest: the interceptor checks that the caller holds one of
	// the method's roles for the trust the request names (its tenant, or
	// its report's tenant); a request naming none is refused.
	TrustRequest
	// TrustAlert: the handler checks the trust of the alert the request
	// names (PermissionDenied for another trust's alert).
	TrustAlert
	// TrustList: the handler returns only the caller's trusts (an empty
	// tenant is "my trusts"; another trust's list is empty).
	TrustList
	// TrustBundle: the handler checks the trust of the bundle submitted.
	TrustBundle
)

func (t Trust) String() string {
	switch t {
	case TrustRequest:
		return "request's trust (interceptor)"
	case TrustAlert:
		return "alert's trust (handler)"
	case TrustList:
		return "caller's trusts only (handler)"
	case TrustBundle:
		return "bundle's trust (handler)"
	}
	return "none"
}

// Rule is who may call one method.
type Rule struct {
	// Roles may call it (a person, or a bound service identity, holding
	// one of them for some trust; per trust as Trust says).
	Roles []identity.Role
	// Services are Herald services (access.ServiceName) whose own calls
	// these are, on their own account, for any trust.
	Services []string
	// Trust says where the per-trust check is made.
	Trust Trust
	// Public methods need no caller (the health service: probes).
	Public bool
	// AnyCaller methods are open to every authenticated caller
	// (reflection, served in the development profile only).
	AnyCaller bool
	// Note explains the rule in the documentation.
	Note string
}

// Table maps every full gRPC method name Herald serves to its rule. A
// method that is not here is refused (deny by default);
// TestEveryMethodIsInTheTable keeps it complete and docs/authorization.md
// prints it (TestTableIsDocumented).
var Table = map[string]Rule{
	// Acknowledgement: the closed loop.
	ackv1.AcknowledgementService_Acknowledge_FullMethodName: {Roles: roles(access.Clinician, access.FailsafeOfficer), Trust: TrustAlert,
		Note: "a recipient of the alert, or a fail-safe officer of its trust"},
	ackv1.AcknowledgementService_Decline_FullMethodName: {Roles: roles(access.Clinician, access.FailsafeOfficer), Trust: TrustAlert,
		Note: "a recipient of the alert, or a fail-safe officer of its trust"},
	ackv1.AcknowledgementService_RecordAction_FullMethodName: {Roles: roles(access.Clinician, access.FailsafeOfficer), Trust: TrustAlert,
		Note: "a recipient of the alert, or a fail-safe officer of its trust"},
	ackv1.AcknowledgementService_MarkRead_FullMethodName: {Roles: roles(access.Clinician, access.FailsafeOfficer), Trust: TrustAlert,
		Note: "a recipient of the alert, or a fail-safe officer of its trust"},
	ackv1.AcknowledgementService_Close_FullMethodName: {Roles: roles(access.FailsafeOfficer), Trust: TrustAlert,
		Note: "a fail-safe officer of the alert's trust"},
	ackv1.AcknowledgementService_GetAlert_FullMethodName:    {Roles: access.AlertReaders, Trust: TrustAlert},
	ackv1.AcknowledgementService_ListAlerts_FullMethodName:  {Roles: access.AlertReaders, Trust: TrustList},
	ackv1.AcknowledgementService_WatchAlerts_FullMethodName: {Roles: access.AlertReaders, Trust: TrustList},
	ackv1.AcknowledgementService_ExportAudit_FullMethodName: {Roles: access.AuditExporters, Trust: TrustAlert,
		Note: "the evidential record (as heraldctl audit export); each export is recorded in the audit as a read"},

	// Intake: sending systems.
	intakev1.IntakeService_RaiseAlert_FullMethodName:  {Roles: roles(access.IntegrationSender), Trust: TrustRequest},
	intakev1.IntakeService_AmendAlert_FullMethodName:  {Roles: roles(access.IntegrationSender), Trust: TrustRequest},
	intakev1.IntakeService_CancelAlert_FullMethodName: {Roles: roles(access.IntegrationSender), Trust: TrustRequest},

	// Notification.
	notificationv1.NotificationService_ListNotifications_FullMethodName: {Roles: roles(access.FailsafeOfficer, access.SafetyLead, access.Operator), Trust: TrustList,
		Note: "the notifications of an alert of the caller's trusts (another trust's: none)"},
	notificationv1.NotificationService_ResendNotification_FullMethodName: {Roles: roles(access.FailsafeOfficer, access.Operator), Trust: TrustAlert},
	notificationv1.NotificationService_TestContactPoint_FullMethodName:   {Roles: roles(access.Operator, access.PolicyAdmin), Trust: TrustRequest},

	// Rules.
	rulesv1.RulesService_Evaluate_FullMethodName:       {Roles: roles(access.PolicyAdmin, access.SafetyLead, access.Operator), Trust: TrustRequest},
	rulesv1.RulesService_ValidateBundle_FullMethodName: {Roles: roles(access.PolicyAdmin, access.SafetyLead, access.Operator), Trust: TrustNone, Note: "checks a bundle; reads nothing"},
	rulesv1.RulesService_LoadBundle_FullMethodName: {Roles: roles(access.PolicyAdmin, access.SafetyLead), Trust: TrustBundle,
		Note: "the same as ProposeBundle: recorded, not in force"},
	rulesv1.RulesService_ProposeBundle_FullMethodName: {Roles: roles(access.PolicyAdmin, access.SafetyLead), Trust: TrustBundle,
		Note: "recorded as proposed by the caller, not in force"},
	rulesv1.RulesService_ApproveBundle_FullMethodName: {Roles: roles(access.PolicyAdmin, access.SafetyLead), Trust: TrustRequest,
		Note: "two-person rule: not by its proposer"},
	rulesv1.RulesService_RejectBundle_FullMethodName:       {Roles: roles(access.PolicyAdmin, access.SafetyLead), Trust: TrustRequest},
	rulesv1.RulesService_ListPendingBundles_FullMethodName: {Roles: roles(access.PolicyAdmin, access.SafetyLead), Trust: TrustRequest},
	rulesv1.RulesService_DryRunBundle_FullMethodName: {Roles: roles(access.PolicyAdmin, access.SafetyLead), Trust: TrustBundle,
		Note: "answers alert ids and staff ids, never patient data"},
	rulesv1.RulesService_GetActiveBundle_FullMethodName: {Roles: roles(access.PolicyAdmin, access.Operator), Trust: TrustRequest,
		Note: "the bundle's directory holds staff contact details"},
	rulesv1.RulesService_ListBundleVersions_FullMethodName: {Roles: roles(access.PolicyAdmin, access.SafetyLead, access.Operator), Trust: TrustRequest},
	rulesv1.RulesService_ResolveTargets_FullMethodName: {Roles: roles(access.Clinician, access.FailsafeOfficer, access.PolicyAdmin, access.Operator),
		Services: []string{access.ServiceNotification}, Trust: TrustRequest,
		Note: "contact points only to the notification service and operators and policy admins of the trust"},
	rulesv1.RulesService_CheckReachability_FullMethodName: {Roles: roles(access.PolicyAdmin, access.SafetyLead, access.Operator, access.FailsafeOfficer), Trust: TrustRequest},

	// Platform services every server carries.
	healthpb.Health_Check_FullMethodName:                                   {Public: true, Note: "probes (also served alone on the plaintext health port)"},
	healthpb.Health_Watch_FullMethodName:                                   {Public: true, Note: "probes"},
	healthpb.Health_List_FullMethodName:                                    {Public: true, Note: "probes"},
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      {AnyCaller: true, Note: "served in the development profile only"},
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: {AnyCaller: true, Note: "served in the development profile only"},
}

func roles(r ...identity.Role) []identity.Role { return r }

// Markdown renders t as the table docs/authorization.md carries, one row
// per method, sorted.
func Markdown(t map[string]Rule) string {
	methods := make([]string, 0, len(t))
	for m := range t {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	var b strings.Builder
	b.WriteString("| Method | Roles | Services (own calls) | Trust check | Note |\n|---|---|---|---|---|\n")
	for _, m := range methods {
		r := t[m]
		who := make([]string, 0, len(r.Roles))
		for _, role := range r.Roles {
			who = append(who, "`"+string(role)+"`")
		}
		switch {
		case r.Public:
			who = []string{"anyone (no caller needed)"}
		case r.AnyCaller:
			who = []string{"any authenticated caller"}
		}
		svcs := "—"
		if len(r.Services) > 0 {
			svcs = "`" + strings.Join(slices.Sorted(slices.Values(r.Services)), "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", m, strings.Join(who, ", "), svcs, r.Trust, r.Note)
	}
	return b.String()
}
