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

	"google.golang.org/protobuf/types/known/durationpb"
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
	Routed *eventsv1.AlertRouted
	// Ref is the policy in force (also inside Routed.Policy).
	Ref *eventsv1.PolicyRef
	// RuleErrors name rules whose evaluation failed (treated as no match);
	// ids only, safe to log.
	RuleErrors []string
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
		}
	}
	if policyID == "" {
		policyID = chosen.Policy
	}
	if in.Kind == KindQuarantined {
		policyID = b.Failsafe.Policy
		q := "quarantined"
		if len(in.QuarantineFields) > 0 {
			q += " (" + strings.Join(in.QuarantineFields, ", ") + ")"
		}
		q += ": routed to the fail-safe policy " + policyID
		if reason != "" {
			q += "; " + reason
		}
		reason = q
	}
	policy := b.Policies[policyID]
	ref := &eventsv1.PolicyRef{PolicyId: policy.ID, Version: b.Version, ContentHash: b.Hash}

	routed := &eventsv1.AlertRouted{
		Category:             chosen.Standard,
		ClassificationReason: reason,
		RuleId:               ruleID,
		Clocks:               clocks(chosen, clockStart(in.At, d)),
		Policy:               snapshot(b, policy, ref),
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

// clockStart is the instant the category's clocks run from: when the
// radiologist verified the report, if the source said and it is not after
// the routing instant, else the routing instant.
func clockStart(at time.Time, d *eventsv1.AlertDetails) time.Time {
	if ts := d.GetReportedAt(); ts != nil && ts.IsValid() {
		if r := ts.AsTime(); !r.After(at) {
			return r
		}
	}
	return at
}

func clocks(c *bundle.Category, start time.Time) *eventsv1.Clocks {
	out := &eventsv1.Clocks{}
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

func snapshot(b *bundle.Bundle, p *bundle.Policy, ref *eventsv1.PolicyRef) *eventsv1.EscalationPolicy {
	out := &eventsv1.EscalationPolicy{Ref: ref, FailsafeQueue: b.Failsafe.Queue}
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
			pt := &eventsv1.Target{Kind: t.Kind, Ref: t.Ref, Tenant: t.Tenant}
			if t.Kind == eventsv1.TargetKind_TARGET_KIND_NETWORK_FAILSAFE_TEAM {
				pt.Ref, pt.Tenant = b.NetworkFailsafe.Team, b.NetworkFailsafe.Tenant
			}
			step.Targets[j] = pt
		}
		out.Steps[i] = step
	}
	return out
}

func categoryName(c eventsv1.Category, local string) string {
	if c == eventsv1.Category_CATEGORY_LOCAL {
		return local
	}
	return strings.TrimPrefix(c.String(), "CATEGORY_")
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
	if c := d.GetSourceFlag().GetCategory(); c != eventsv1.Category_CATEGORY_UNSPECIFIED {
		f.Flag = strings.TrimPrefix(c.String(), "CATEGORY_")
	}
	if s := d.GetReportStatus(); s != eventsv1.ReportStatus_REPORT_STATUS_UNSPECIFIED {
		f.ReportStatus = strings.TrimPrefix(s.String(), "REPORT_STATUS_")
	}
	if s := d.GetSource(); s != eventsv1.Source_SOURCE_UNSPECIFIED {
		f.Source = strings.TrimPrefix(s.String(), "SOURCE_")
	}
	return f
}
