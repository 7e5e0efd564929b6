package bundle

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/google/cel-go/cel"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// File is one YAML file of a bundle as it was read.
type File struct {
	Name    string
	Content []byte
}

// Bundle is a tenant's compiled policy bundle. It is immutable once Parse
// returns it and safe for concurrent use.
type Bundle struct {
	Tenant  string
	Name    string
	Version string
	// VersionFile is the file that declares the version.
	VersionFile string
	// Hash is the SHA-256 (hex) of the files, names and contents.
	Hash string
	// Location is the trust's time zone (Europe/London unless set).
	Location *time.Location
	// Files are the sources, sorted by name.
	Files []File

	// Categories are sorted by rank, most severe first.
	Categories []*Category
	// Rules are sorted by the rank of their category, most severe first;
	// rules of one rank keep their file order.
	Rules    []*Rule
	Policies map[string]*Policy
	// PolicyOrder lists policy ids in file order.
	PolicyOrder []string
	People      map[string]*Person
	Teams       map[string]*Team
	Rotas       map[string]*Rota

	Failsafe Failsafe
	// NetworkFailsafe is the network's fail-safe team (tenant empty: this one).
	NetworkFailsafe TeamRef

	snapshots   map[string]*eventsv1.EscalationPolicy
	categories  map[string]*Category
	byClinician map[string]*Person
	teamByAlias map[string]*Team
}

// Failsafe is the trust's fail-safe arrangement.
type Failsafe struct {
	Officer         string
	Queue           string
	Policy          string
	DefaultCategory string
}

// TeamRef names a team, possibly in another tenant's bundle.
type TeamRef struct {
	Tenant string
	Team   string
}

// Category is a clinical category and its clocks. Zero durations mean the
// category has no such clock.
type Category struct {
	// Code is the standard category name (CRITICAL, ...) or a local code.
	Code string
	// Standard is the event-log category; CATEGORY_LOCAL for local ones.
	Standard    eventsv1.Category
	Rank        int
	Communicate time.Duration
	Acknowledge time.Duration
	Action      time.Duration
	Policy      string
	// ClockStart says what the clocks run from (ClockStartReceived unless
	// the bundle says otherwise).
	ClockStart ClockStart
}

// ClockStart is what a category's clocks run from.
type ClockStart int

// Clock starts (zero is the default, ClockStartReceived).
const (
	// ClockStartReceived: the later of the report's verification time and
	// Herald's receipt, so a report sent days after it was verified does
	// not breach every clock on arrival (the source time is kept for
	// audit in the routing's clocks).
	ClockStartReceived ClockStart = iota
	// ClockStartReported: the report's verification time when the source
	// gives one (not in the future), as RCR audits measure; a back-dated
	// report then breaches at once.
	ClockStartReported
)

// Rule is a compiled classification rule.
type Rule struct {
	ID       string
	When     string
	Category *Category
	Reason   string
	// Policy overrides the category's policy when set.
	Policy  string
	Program cel.Program
}

// Policy is an escalation policy.
type Policy struct {
	ID          string
	Description string
	Steps       []Step
	// Breach lists who is told when each clock is breached, on
	// BreachChannels in order (all of a person's channels when empty).
	Breach         []BreachNotice
	BreachChannels []eventsv1.Channel
	// FailsafeReminder is how often the fail-safe officers are reminded of
	// an alert in the fail-safe queue until it is closed (0: never).
	FailsafeReminder time.Duration
}

// BreachNotice names who is told of a clock's breach.
type BreachNotice struct {
	Clock   eventsv1.ClockKind
	Targets []Target
}

// Step is one escalation step.
type Step struct {
	Targets  []Target
	Timeout  time.Duration
	Repeats  uint32
	AckMode  eventsv1.AckMode
	Channels []eventsv1.Channel
}

// Target is an unresolved step target.
type Target struct {
	Kind   eventsv1.TargetKind
	Ref    string
	Tenant string
}

// Person is someone who can be contacted.
type Person struct {
	ID   string
	Name string
	GMC  string
	IDs  []string
	// Contacts are in order of preference.
	Contacts []Contact
	// Teams are the ids of the teams the person is a member of.
	Teams []string
}

// Contact is one contact point.
type Contact struct {
	Channel eventsv1.Channel
	Address string
}

// Team is a group of people.
type Team struct {
	ID string
	// Role is how members are labelled when contacted as a team ("team:<id>").
	Role    string
	Name    string
	Aliases []string
	Members []string
}

// Snapshot returns the policy's snapshot as AlertRouted carries it, with
// its reference (policy id, bundle version and content hash). It is built
// once at load and shared by every routing decision: treat it as read-only.
func (b *Bundle) Snapshot(policyID string) (*eventsv1.EscalationPolicy, bool) {
	p, ok := b.snapshots[policyID]
	return p, ok
}

func (b *Bundle) buildSnapshots() {
	b.snapshots = make(map[string]*eventsv1.EscalationPolicy, len(b.Policies))
	for id, p := range b.Policies {
		ref := &eventsv1.PolicyRef{PolicyId: id, Version: b.Version, ContentHash: b.Hash}
		out := &eventsv1.EscalationPolicy{Ref: ref, FailsafeQueue: b.Failsafe.Queue}
		if p.FailsafeReminder > 0 {
			out.FailsafeReminderEvery = durationpb.New(p.FailsafeReminder)
		}
		for _, n := range p.Breach {
			bn := &eventsv1.BreachNotice{Clock: n.Clock, Channels: append([]eventsv1.Channel(nil), p.BreachChannels...)}
			for _, t := range n.Targets {
				bn.Targets = append(bn.Targets, b.snapshotTarget(t))
			}
			out.BreachNotices = append(out.BreachNotices, bn)
		}
		out.Steps = make([]*eventsv1.EscalationStep, len(p.Steps))
		for i, s := range p.Steps {
			step := &eventsv1.EscalationStep{
				Index:    uint32(i),
				Timeout:  durationpb.New(s.Timeout),
				Repeats:  s.Repeats,
				AckMode:  s.AckMode,
				Channels: append([]eventsv1.Channel(nil), s.Channels...),
				Targets:  make([]*eventsv1.Target, len(s.Targets)),
			}
			for j, t := range s.Targets {
				step.Targets[j] = b.snapshotTarget(t)
			}
			out.Steps[i] = step
		}
		b.snapshots[id] = out
	}
}

// snapshotTarget is a target as a snapshot carries it: the network's
// fail-safe team named.
func (b *Bundle) snapshotTarget(t Target) *eventsv1.Target {
	pt := &eventsv1.Target{Kind: t.Kind, Ref: t.Ref, Tenant: t.Tenant}
	if t.Kind == eventsv1.TargetKind_TARGET_KIND_NETWORK_FAILSAFE_TEAM {
		pt.Ref, pt.Tenant = b.NetworkFailsafe.Team, b.NetworkFailsafe.Tenant
	}
	return pt
}

// Category returns the category with the code, if defined.
func (b *Bundle) Category(code string) (*Category, bool) {
	c, ok := b.categories[code]
	return c, ok
}

// CategoryFor returns the bundle's category for an event-log category (and
// local code for CATEGORY_LOCAL), if defined.
func (b *Bundle) CategoryFor(c eventsv1.Category, local string) (*Category, bool) {
	switch c {
	case eventsv1.Category_CATEGORY_LOCAL:
		cat, ok := b.categories[local]
		if !ok || cat.Standard != eventsv1.Category_CATEGORY_LOCAL {
			return nil, false
		}
		return cat, true
	case eventsv1.Category_CATEGORY_UNSPECIFIED:
		return nil, false
	default:
		return b.Category(CategoryCode(c))
	}
}

// PersonByClinicianID finds the person whose GMC number or local id is id.
func (b *Bundle) PersonByClinicianID(id string) (*Person, bool) {
	p, ok := b.byClinician[id]
	return p, ok
}

// TeamByName finds a team by id or alias.
func (b *Bundle) TeamByName(name string) (*Team, bool) {
	if t, ok := b.Teams[name]; ok {
		return t, true
	}
	t, ok := b.teamByAlias[name]
	return t, ok
}

// CategoryCode is the bundle code of a standard category; "" for others.
func CategoryCode(c eventsv1.Category) string {
	switch c {
	case eventsv1.Category_CATEGORY_CRITICAL:
		return "CRITICAL"
	case eventsv1.Category_CATEGORY_URGENT:
		return "URGENT"
	case eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED:
		return "SIGNIFICANT_UNEXPECTED"
	case eventsv1.Category_CATEGORY_CANCER:
		return "CANCER"
	default:
		return ""
	}
}

// StandardCategory maps a bundle code to the event-log category, with ok
// false for a code that is not one of the four standard ones.
func StandardCategory(code string) (eventsv1.Category, bool) {
	switch code {
	case "CRITICAL":
		return eventsv1.Category_CATEGORY_CRITICAL, true
	case "URGENT":
		return eventsv1.Category_CATEGORY_URGENT, true
	case "SIGNIFICANT_UNEXPECTED":
		return eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED, true
	case "CANCER":
		return eventsv1.Category_CATEGORY_CANCER, true
	default:
		return eventsv1.Category_CATEGORY_UNSPECIFIED, false
	}
}

// StandardCodes returns the four categories every bundle defines.
func StandardCodes() []string {
	return []string{"CRITICAL", "URGENT", "SIGNIFICANT_UNEXPECTED", "CANCER"}
}
