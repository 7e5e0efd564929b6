package app

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventtype"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
	"github.com/herald-health/herald/services/rules/internal/domain/routing"
)

// HistoryReader reads the event log from an instant on (by record time).
type HistoryReader interface {
	ReadSince(ctx context.Context, since time.Time, fn func(ev *eventsv1.Event)) error
}

// RoutingSummary is one routing decision without patient data: category,
// rule, policy version, the first step's targets and the people they
// resolve to, every step's timeout and the category's clocks.
type RoutingSummary struct {
	Category        eventsv1.Category
	Local           string
	RuleID          string
	Policy          *eventsv1.PolicyRef
	FirstTargets    []*eventsv1.Target
	FirstRecipients []*eventsv1.Recipient
	// RecipientsKnown is false when the bundle version that decided is no
	// longer loaded, so its people cannot be resolved.
	RecipientsKnown bool
	StepTimeouts    []time.Duration
	// Clocks: how long after the clocks start each obligation is due (0: none).
	Communicate, Acknowledge, Action time.Duration
}

// DryRunAlert compares one routing in the log with the bundle's.
type DryRunAlert struct {
	AlertID     string
	Tenant      string
	RoutedAt    time.Time
	Cause       string
	Current     RoutingSummary
	Proposed    RoutingSummary
	Differences []string
}

// DryRunResult is the replay of the trust's routings since an instant.
type DryRunResult struct {
	Since    time.Time
	Replayed int
	Alerts   []DryRunAlert // changed ones, and the others when asked
	Changed  int
}

// DryRun replays every routing of b's trust in the log since `since`: for
// each AlertRouted whose cause (raised, amended, quarantined) is in the
// window, the decision recorded then (under the version then in force)
// against the decision b would make for the same cause at the same instant.
// It reads; it appends nothing and changes nothing in force.
func DryRun(ctx context.Context, history HistoryReader, registry *Registry, b *bundle.Bundle, since time.Time, includeUnchanged bool) (DryRunResult, error) {
	res := DryRunResult{Since: since}
	causes := map[string]*eventsv1.Event{}
	previous := map[string]*routing.Previous{} // alert -> category in force before the routing being replayed
	proposed := registry.Snapshot().With(b)
	var failed error
	err := history.ReadSince(ctx, since, func(ev *eventsv1.Event) {
		if ev.GetTenant() != b.Tenant || failed != nil {
			return
		}
		if _, ok := causeInput(ev); ok {
			causes[ev.GetEventId()] = ev
			return
		}
		switch ev.GetPayload().(type) {
		case *eventsv1.Event_AlertClosed, *eventsv1.Event_AlertCancelled:
			delete(previous, ev.GetAlertId())
			return
		}
		routed := ev.GetAlertRouted()
		if routed == nil {
			return
		}
		prev := previous[ev.GetAlertId()]
		previous[ev.GetAlertId()] = &routing.Previous{Category: routed.GetCategory(), Local: routed.GetLocalCategory(), Rank: routed.GetCategoryRank()}
		cause, ok := causes[ev.GetCausationId()]
		if !ok {
			return // its cause is before the window
		}
		in, _ := causeInput(cause)
		if prev != nil && in.Kind != routing.KindQuarantined {
			in.Previous = prev
			if in.Kind == routing.KindRaised {
				in.Kind = routing.KindAmended
			}
		}
		dec, err := routing.Route(proposed, in)
		if err != nil {
			failed = fmt.Errorf("replay the routing of alert %s: %w", ev.GetAlertId(), err)
			return
		}
		a := DryRunAlert{AlertID: ev.GetAlertId(), Tenant: ev.GetTenant(), RoutedAt: ev.GetOccurredAt().AsTime(), Cause: eventtype.Of(cause)}
		referrer := in.Details.GetReferrer()
		a.Current = summarise(b.Tenant, routed, policyOf(ev, routed), in.At, referrer, func() (routing.Bundles, bool) {
			old, ok := registry.ByHash(b.Tenant, policyOf(ev, routed).GetContentHash())
			if !ok {
				return nil, false
			}
			return registry.Snapshot().With(old), true
		})
		a.Proposed = summarise(b.Tenant, dec.Routed, dec.Ref, in.At, referrer, func() (routing.Bundles, bool) { return proposed, true })
		a.Differences = differences(a.Current, a.Proposed)
		res.Replayed++
		if len(a.Differences) > 0 {
			res.Changed++
		}
		if len(a.Differences) > 0 || includeUnchanged {
			res.Alerts = append(res.Alerts, a)
		}
	})
	if err == nil {
		err = failed
	}
	if err != nil {
		return DryRunResult{}, err
	}
	return res, nil
}

// policyOf is the policy reference of a routing: the envelope's, else the
// snapshot's.
func policyOf(ev *eventsv1.Event, r *eventsv1.AlertRouted) *eventsv1.PolicyRef {
	if ev.GetPolicy() != nil {
		return ev.GetPolicy()
	}
	return r.GetPolicy().GetRef()
}

func summarise(tenant string, r *eventsv1.AlertRouted, ref *eventsv1.PolicyRef, at time.Time, referrer *eventsv1.Clinician, bundles func() (routing.Bundles, bool)) RoutingSummary {
	s := RoutingSummary{Category: r.GetCategory(), Local: r.GetLocalCategory(), RuleID: r.GetRuleId(), Policy: ref}
	steps := r.GetPolicy().GetSteps()
	for _, st := range steps {
		s.StepTimeouts = append(s.StepTimeouts, st.GetTimeout().AsDuration())
	}
	if len(steps) > 0 {
		s.FirstTargets = steps[0].GetTargets()
		if bs, ok := bundles(); ok {
			if res, err := routing.Resolve(bs, tenant, steps[0].GetTargets(), at, referrer); err == nil {
				s.RecipientsKnown = true
				for _, p := range res.People {
					s.FirstRecipients = append(s.FirstRecipients, p.Recipient())
				}
			}
		}
	}
	c := r.GetClocks()
	start := c.GetStartedAt().AsTime()
	within := func(d *timestamppb.Timestamp) time.Duration {
		if d == nil {
			return 0
		}
		return d.AsTime().Sub(start)
	}
	s.Communicate, s.Acknowledge, s.Action = within(c.GetCommunicateBy()), within(c.GetAcknowledgeBy()), within(c.GetActionBy())
	return s
}

func differences(cur, next RoutingSummary) []string {
	var out []string
	if cur.Category != next.Category || cur.Local != next.Local {
		out = append(out, fmt.Sprintf("category %s -> %s", categoryText(cur), categoryText(next)))
	}
	if a, b := cur.Policy.GetPolicyId(), next.Policy.GetPolicyId(); a != b {
		out = append(out, fmt.Sprintf("policy %s -> %s", a, b))
	}
	if a, b := targetsText(cur.FirstTargets), targetsText(next.FirstTargets); a != b {
		out = append(out, fmt.Sprintf("first step targets %s -> %s", a, b))
	}
	if cur.RecipientsKnown {
		if a, b := recipientsText(cur.FirstRecipients), recipientsText(next.FirstRecipients); a != b {
			out = append(out, fmt.Sprintf("first step recipients %s -> %s", a, b))
		}
	}
	if !slices.Equal(cur.StepTimeouts, next.StepTimeouts) {
		out = append(out, fmt.Sprintf("step timeouts %s -> %s", durationsText(cur.StepTimeouts), durationsText(next.StepTimeouts)))
	}
	for _, c := range []struct {
		name string
		a, b time.Duration
	}{{"communicate", cur.Communicate, next.Communicate}, {"acknowledge", cur.Acknowledge, next.Acknowledge}, {"action", cur.Action, next.Action}} {
		if c.a != c.b {
			out = append(out, fmt.Sprintf("%s clock %s -> %s", c.name, clockText(c.a), clockText(c.b)))
		}
	}
	return out
}

func categoryText(s RoutingSummary) string {
	if s.Local != "" {
		return s.Local
	}
	return strings.TrimPrefix(s.Category.String(), "CATEGORY_")
}

func targetsText(ts []*eventsv1.Target) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = strings.ToLower(strings.TrimPrefix(t.GetKind().String(), "TARGET_KIND_"))
		if t.GetRef() != "" {
			parts[i] += ":" + t.GetRef()
		}
		if t.GetTenant() != "" {
			parts[i] += "@" + t.GetTenant()
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func recipientsText(rs []*eventsv1.Recipient) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.GetPersonId()
		if r.GetTenant() != "" {
			parts[i] += "@" + r.GetTenant()
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func durationsText(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func clockText(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}

// DurationProto is d for the API (nil when 0: no such clock).
func DurationProto(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}
