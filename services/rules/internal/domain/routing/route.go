// Package routing decides how an alert is handled: its category (the
// source's flag, upgraded by a classification rule with a recorded reason,
// never silently downgraded by an amendment), its clocks as absolute
// deadlines, and the snapshot of the escalation policy in force. It also
// resolves a step's targets to people and contact points at an instant,
// plans the full timeline of contacts (the dry run) and checks that every
// step of every policy reaches someone at every hour of a window.
//
// Everything here is a pure function of the bundles, the alert and the
// instant: the AlertRouted the service appends and the one Evaluate shows
// come from the same call to Route.
package routing

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// ErrNoBundle means no policy bundle is active for the alert's tenant.
var ErrNoBundle = errors.New("no policy bundle is active for the tenant")

// Bundles looks up the active bundle of a tenant. Implementations must
// return the same immutable *bundle.Bundle for the duration of one call of
// the functions in this package (a snapshot).
type Bundles interface {
	Bundle(tenant string) (*bundle.Bundle, bool)
}

// Kind is what happened to the alert that asks for routing.
type Kind int

// Kinds of routing input; zero is invalid.
const (
	KindRaised Kind = iota + 1
	KindAmended
	KindQuarantined
)

// Previous is how the alert was routed before an amendment.
type Previous struct {
	Category eventsv1.Category
	Local    string
	Rank     uint32
}

// Input is an alert to route at an instant.
type Input struct {
	Tenant  string
	Kind    Kind
	Details *eventsv1.AlertDetails
	// At is the routing instant: the causing event's occurred-at for the
	// service, the requested instant for a dry run. Escalation starts here.
	At time.Time
	// Previous is the routing in force before an amendment, nil if none.
	Previous *Previous
	// QuarantineFields are the fields intake found wanting (quarantined only).
	QuarantineFields []string
}

// Decision is the outcome of Route.
type Decision struct {
	// Routed is the new AlertRouted. Its Policy (and Ref) are the bundle's
	// shared snapshot: marshal them, never modify them.
	Routed *eventsv1.AlertRouted
	// Ref is the policy in force (also inside Routed.Policy).
	Ref *eventsv1.PolicyRef
	// RuleErrors name rules whose evaluation failed (treated as no match);
	// ids only, safe to log.
	RuleErrors []string
	// DowngradeRefused: an amendment classified the finding lower than the
	// category in force, which was kept (the reason is recorded in Routed).
	DowngradeRefused bool
}

// Route classifies the alert and snapshots its policy. It fails with
// ErrNoBundle when the tenant has no active bundle.
func Route(bs Bundles, in Input) (Decision, error) {
	b, ok := bs.Bundle(in.Tenant)
	if !ok {
		return Decision{}, fmt.Errorf("route alert of tenant %q: %w", in.Tenant, ErrNoBundle)
	}
	d := in.Details
	if d == nil {
		d = &eventsv1.AlertDetails{}
	}
	var dec Decision
	facts := factsOf(b, in, d)

	flag := d.GetSourceFlag()
	base, hasBase := b.CategoryFor(flag.GetCategory(), flag.GetCode())
	chosen := base
	var reason, ruleID, policyID string
	for _, r := range b.Rules {
		if hasBase && r.Category.Rank >= base.Rank {
			break // rules are ordered by rank: none below can upgrade
		}
		out, _, err := r.Program.Eval(facts)
		if err != nil {
			dec.RuleErrors = append(dec.RuleErrors, r.ID)
			continue
		}
		if match, isBool := out.Value().(bool); isBool && match {
			chosen = r.Category
			ruleID = r.ID
			policyID = r.Policy
			if hasBase {
				reason = fmt.Sprintf("rule %s upgraded the source's %s: %s", r.ID, base.Code, r.Reason)
			} else {
				reason = fmt.Sprintf("rule %s (the source flagged no category): %s", r.ID, r.Reason)
			}
			break
		}
	}
	if chosen == nil {
		chosen, _ = b.Category(b.Failsafe.DefaultCategory)
		reason = fmt.Sprintf("the source flagged no category and no rule matched: the trust's default %s", chosen.Code)
	}

	var previous eventsv1.Category
	if in.Kind == KindAmended && in.Previous != nil {
		previous = in.Previous.Category
		prevRank := int(in.Previous.Rank)
		prevCat, known := b.CategoryFor(in.Previous.Category, in.Previous.Local)
		if known {
			prevRank = prevCat.Rank
		}
		if prevRank > 0 && chosen.Rank > prevRank {
			kept := categoryName(in.Previous.Category, in.Previous.Local)
			reason = fmt.Sprintf("the amendment classifies the finding as %s; kept %s: an amendment never downgrades an alert without a recorded decision", chosen.Code, kept)
			if known {
				chosen = prevCat
			} else {
				chosen = &bundle.Category{Code: kept, Standard: in.Previous.Category, Rank: prevRank, Policy: chosen.Policy}
			}
			ruleID, policyID = "", ""
			dec.DowngradeRefused = true
		}
	}
	if policyID == "" {
		policyID = chosen.Policy
	}
	tellReferrer := false
	if in.Kind == KindQuarantined {
		policyID = b.Failsafe.Policy
		q := "quarantined"
		if len(in.QuarantineFields) > 0 {
			q += " (" + strings.Join(in.QuarantineFields, ", ") + ")"
		}
		q += ": routed to the fail-safe policy " + policyID
		if tellReferrer = d.GetReferrer().GetId() != ""; tellReferrer {
			q += ", its first step also to the referrer"
		}
		if reason != "" {
			q += "; " + reason
		}
		reason = q
	}
	snap, _ := b.Snapshot(policyID) // every policy id here was validated at load
	if tellReferrer {
		snap = withReferrerFirst(snap)
	}
	ref := snap.GetRef()

	routed := &eventsv1.AlertRouted{
		Category:             chosen.Standard,
		ClassificationReason: reason,
		RuleId:               ruleID,
		Clocks:               clocks(chosen, in.At, d),
		Policy:               snap,
		PreviousCategory:     previous,
		CategoryRank:         uint32(chosen.Rank),
	}
	if chosen.Standard == eventsv1.Category_CATEGORY_LOCAL {
		routed.LocalCategory = chosen.Code
	}
	dec.Routed = routed
	dec.Ref = ref
	return dec, nil
}

// withReferrerFirst returns a copy of the policy snapshot whose first step
// also targets the referrer. A quarantined report's data-quality problem is
// the fail-safe team's to resolve, but its finding is the referrer's: where
// the report names one, they are told at once rather than after the data
// are corrected. The shared snapshot is never modified.
func withReferrerFirst(snap *eventsv1.EscalationPolicy) *eventsv1.EscalationPolicy {
	if len(snap.GetSteps()) == 0 {
		return snap
	}
	for _, t := range snap.GetSteps()[0].GetTargets() {
		if t.GetKind() == eventsv1.TargetKind_TARGET_KIND_REFERRER {
			return snap
		}
	}
	out := proto.Clone(snap).(*eventsv1.EscalationPolicy)
	out.Steps[0].Targets = append(out.Steps[0].Targets, &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER})
	return out
}

// clockStart is the instant the category's clocks run from. at is when
// Herald received the report (the routing instant). By default the clocks
// run from the later of the report's verification and its receipt, which
// is the receipt (a verification time in the future is a source's clock
// error and never gives a finding more time): a report sent days after it
// was verified gets its full time instead of breaching every clock on
// arrival. A category whose clock start is "reported" runs from the
// verification time when the source gives one, as RCR audits measure.
func clockStart(c *bundle.Category, at time.Time, d *eventsv1.AlertDetails) time.Time {
	if ts := d.GetReportedAt(); c.ClockStart == bundle.ClockStartReported && ts != nil && ts.IsValid() && !ts.AsTime().After(at) {
		return ts.AsTime()
	}
	return at
}

// clocks are the category's deadlines from its clock start, with the start
// and the source's report time kept for audit.
func clocks(c *bundle.Category, at time.Time, d *eventsv1.AlertDetails) *eventsv1.Clocks {
	start := clockStart(c, at, d)
	out := &eventsv1.Clocks{StartedAt: timestamppb.New(start)}
	if ts := d.GetReportedAt(); ts != nil && ts.IsValid() {
		out.ReportedAt = ts
	}
	if c.Communicate > 0 {
		out.CommunicateBy = timestamppb.New(start.Add(c.Communicate))
	}
	if c.Acknowledge > 0 {
		out.AcknowledgeBy = timestamppb.New(start.Add(c.Acknowledge))
	}
	if c.Action > 0 {
		out.ActionBy = timestamppb.New(start.Add(c.Action))
	}
	return out
}

func categoryName(c eventsv1.Category, local string) string {
	if c == eventsv1.Category_CATEGORY_LOCAL {
		return local
	}
	return bundle.CategoryCode(c)
}

func factsOf(b *bundle.Bundle, in Input, d *eventsv1.AlertDetails) *bundle.Facts {
	lt := in.At.In(b.Location)
	wd := int(lt.Weekday())
	if wd == 0 {
		wd = 7
	}
	f := &bundle.Facts{
		Tenant:         in.Tenant,
		FlagCode:       d.GetSourceFlag().GetCode(),
		AbnormalFlags:  d.GetSourceFlag().GetAbnormalFlags(),
		TriggerPhrases: d.GetSourceFlag().GetTriggerPhrases(),
		ExamCode:       d.GetExam().GetCode(),
		ExamSystem:     d.GetExam().GetCodeSystem(),
		Modality:       d.GetExam().GetModality(),
		PatientClass:   d.GetEncounter().GetPatientClass(),
		Location:       d.GetEncounter().GetLocation(),
		ReferrerTeam:   d.GetReferrer().GetTeam(),
		Amended:        in.Kind == KindAmended,
		Hour:           lt.Hour(),
		Minute:         lt.Minute(),
		Weekday:        wd,
		Weekend:        wd >= 6,
	}
	if c := d.GetSourceFlag().GetCategory(); c == eventsv1.Category_CATEGORY_LOCAL {
		f.Flag = "LOCAL"
	} else {
		f.Flag = bundle.CategoryCode(c)
	}
	switch d.GetReportStatus() {
	case eventsv1.ReportStatus_REPORT_STATUS_PRELIMINARY:
		f.ReportStatus = "PRELIMINARY"
	case eventsv1.ReportStatus_REPORT_STATUS_FINAL:
		f.ReportStatus = "FINAL"
	case eventsv1.ReportStatus_REPORT_STATUS_CORRECTED:
		f.ReportStatus = "CORRECTED"
	case eventsv1.ReportStatus_REPORT_STATUS_CANCELLED:
		f.ReportStatus = "CANCELLED"
	}
	switch d.GetSource() {
	case eventsv1.Source_SOURCE_HL7V2:
		f.Source = "HL7V2"
	case eventsv1.Source_SOURCE_FHIR:
		f.Source = "FHIR"
	case eventsv1.Source_SOURCE_GRPC:
		f.Source = "GRPC"
	}
	return f
}
