package eventsign

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Service identities that sign events: the names a key set binds keys to.
const (
	ServiceIntake          = "intake"
	ServiceRules           = "rules"
	ServiceNotification    = "notification"
	ServiceAcknowledgement = "acknowledgement"
)

// Producer is one row of the Producers table: who may append an event
// type, and why.
type Producer struct {
	Services []string
	Note     string
}

// Producers is the one table of which service identity may produce which
// event type (the payload's message name, eventlog.TypeOf). A type not in
// the table is refused from every signer (deny by default);
// TestEveryEventTypeHasAProducer fails when an event type is added to the
// proto without a row here, and docs/authorization.md ("Who may append
// which event") is generated from it (TestProducersAreDocumented).
var Producers = map[string]Producer{
	"AlertRaised":      {[]string{ServiceIntake}, "a sending system's finding, validated"},
	"AlertAmended":     {[]string{ServiceIntake}, ""},
	"AlertCancelled":   {[]string{ServiceIntake}, ""},
	"AlertQuarantined": {[]string{ServiceIntake}, "an incomplete flagged report"},

	"AlertRouted":    {[]string{ServiceRules}, "classification and the policy in force"},
	"BundleProposed": {[]string{ServiceRules}, "policy-bundle topic"},
	"BundleReviewed": {[]string{ServiceRules}, "policy-bundle topic: the approval puts a bundle in force"},

	"NotificationSent":       {[]string{ServiceNotification}, ""},
	"NotificationFailed":     {[]string{ServiceNotification}, ""},
	"NotificationDelivered":  {[]string{ServiceNotification}, "delivery receipts"},
	"NotificationSuperseded": {[]string{ServiceNotification}, ""},
	"NotificationAttempted":  {[]string{ServiceNotification}, ""},
	"NotificationDeferred":   {[]string{ServiceNotification}, ""},
	"StepRecipientsResolved": {[]string{ServiceNotification}, "who a step reached: the recipients acknowledgement checks"},
	"DigestSent":             {[]string{ServiceNotification}, ""},
	"BreachNoticeSent":       {[]string{ServiceNotification}, ""},

	"AlertRead":         {[]string{ServiceAcknowledgement}, ""},
	"AlertAcknowledged": {[]string{ServiceAcknowledgement}, "a named clinician accepted responsibility"},
	"AlertDeclined":     {[]string{ServiceAcknowledgement}, ""},
	"ActionRecorded":    {[]string{ServiceAcknowledgement}, ""},
	"AlertEscalated":    {[]string{ServiceAcknowledgement}, "SLA timers"},
	"SLABreached":       {[]string{ServiceAcknowledgement}, "SLA timers"},
	"FailsafeQueued":    {[]string{ServiceAcknowledgement}, "SLA timers"},
	"AlertClosed":       {[]string{ServiceAcknowledgement}, "a fail-safe officer closed the alert"},
	"TimerRepaired":     {[]string{ServiceAcknowledgement}, ""},
	"AuditAnchored":     {[]string{ServiceAcknowledgement}, "the audit chain's head"},
}

// Roles of the topics whose records are not events, for TopicWriters.
const (
	// TopicAuditIntake: the audit entries waiting to be chained
	// (herald.audit-intake.v1): commands forwarded from the log and reads
	// of patient data (RecordViewed), submitted by acknowledgement;
	// heraldctl submits DataKeyDestroyed with the key it is given, which
	// must be acknowledgement's.
	TopicAuditIntake = "audit-intake"
	// TopicAuditRecords: the hash-chained audit records (herald.audit.v1),
	// appended by acknowledgement's chainer alone.
	TopicAuditRecords = "audit-records"
	// TopicDeadLetters: the dead-letter topic, written by every consumer
	// group (re-signed by the service that dead-letters the record; the
	// record's own signature travels on in HeaderOriginalSignature).
	TopicDeadLetters = "dead-letters"
)

// HeaderOriginalSignature keeps, on a dead-lettered record, the signature
// header it had on its own topic (the dead-lettering service re-signs it
// for the dead-letter topic).
const HeaderOriginalSignature = "herald-sig-original"

// TopicWriters is the table of which service identity may write the
// records of a topic that does not hold events (the audit intake and
// records, the dead letters), by topic role; the anchors topic holds
// events (AuditAnchored, in Producers). A role not here is refused from
// every signer.
var TopicWriters = map[string]Producer{
	TopicAuditIntake:  {[]string{ServiceAcknowledgement}, "audit entries to chain: commands from the log, reads of patient data; `heraldctl keys destroy` signs with acknowledgement's key"},
	TopicAuditRecords: {[]string{ServiceAcknowledgement}, "the chained audit records (the chainer)"},
	TopicDeadLetters:  {Services(), "re-signed by the service that dead-letters the record"},
}

// AllowedOn returns nil when service may write the records of the topic
// of role, else an error wrapping ErrNotAllowed that names both.
func AllowedOn(service, role string) error {
	p, ok := TopicWriters[role]
	if ok && slices.Contains(p.Services, service) {
		return nil
	}
	if !ok {
		return fmt.Errorf("%w (%s signed a record of %s, which no service may write)", ErrNotAllowed, service, role)
	}
	return fmt.Errorf("%w (%s signed a record of %s, which only %v may write)", ErrNotAllowed, service, role, p.Services)
}

// Allowed returns nil when service may produce events of type typ, else an
// error wrapping ErrNotAllowed that names both.
func Allowed(service, typ string) error {
	p, ok := Producers[typ]
	if ok && slices.Contains(p.Services, service) {
		return nil
	}
	if !ok {
		return fmt.Errorf("%w (%s signed %s, which no service may produce)", ErrNotAllowed, service, typ)
	}
	return fmt.Errorf("%w (%s signed %s, which only %v may produce)", ErrNotAllowed, service, typ, p.Services)
}

// Services returns every service identity of the table, sorted.
func Services() []string {
	return []string{ServiceAcknowledgement, ServiceIntake, ServiceNotification, ServiceRules}
}

// Types returns the event types of the table, sorted.
func Types() []string {
	out := make([]string, 0, len(Producers))
	for t := range Producers {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Markdown renders the Producers table for docs/authorization.md.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| Event type | May be appended by | Note |\n|---|---|---|\n")
	for _, t := range Types() {
		p := Producers[t]
		svcs := make([]string, len(p.Services))
		for i, s := range p.Services {
			svcs[i] = "`" + s + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", t, strings.Join(svcs, ", "), p.Note)
	}
	b.WriteString("\nRecords that are not events, by topic (`eventsign.TopicWriters`):\n\n| Topic | May be written by | Note |\n|---|---|---|\n")
	roles := make([]string, 0, len(TopicWriters))
	for r := range TopicWriters {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		p := TopicWriters[r]
		svcs := make([]string, len(p.Services))
		for i, s := range p.Services {
			svcs[i] = "`" + s + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r, strings.Join(svcs, ", "), p.Note)
	}
	return b.String()
}
