package routing

import (
	"fmt"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Contact is one planned contact of the dry-run timeline. Recipient and
// Channels may be shared between contacts: treat them as read-only.
type Contact struct {
	Step      uint32
	Repeat    uint32
	At        time.Time
	Recipient *eventsv1.Recipient
	// Channels are the step's channels the person has a contact point for,
	// in the step's order; empty means the person cannot be reached.
	Channels []eventsv1.Channel
}

// Unreached is a planned send that reaches nobody.
type Unreached struct {
	Step    uint32
	Repeat  uint32
	At      time.Time
	Problem string
}

// Evaluation is a routing decision with its planned timeline.
type Evaluation struct {
	Decision
	Timeline []Contact
	// Unreached lists sends of the plan at which nobody can be reached.
	Unreached []Unreached
	// FailsafeAt is when the policy is exhausted if nobody acknowledges.
	FailsafeAt time.Time
}

// Evaluate routes the alert exactly as the service does (Route) and plans
// who is contacted when and through what if nobody acknowledges: step i's
// repeat r is sent at in.At plus the timeouts of the sends before it (a step
// is sent repeats+1 times, each waiting its timeout), and each send resolves
// its targets at its own instant (rotas change hands).
func Evaluate(bs Bundles, in Input) (Evaluation, error) {
	dec, err := Route(bs, in)
	if err != nil {
		return Evaluation{}, err
	}
	ev := Evaluation{Decision: dec}
	b, _ := bs.Bundle(in.Tenant) // Route found it
	steps := dec.Routed.GetPolicy().GetSteps()
	sends := 0
	for _, step := range steps {
		sends += int(step.GetRepeats()) + 1
	}
	ev.Timeline = make([]Contact, 0, 2*sends)
	var res Resolution // reused by every send
	t := in.At
	var recipients []*eventsv1.Recipient // one per person and role, shared by their sends
	recipient := func(p Resolved) *eventsv1.Recipient {
		for _, r := range recipients {
			if r.PersonId == p.Person.ID && r.Role == p.Role && r.Tenant == p.Tenant {
				return r
			}
		}
		r := p.Recipient()
		recipients = append(recipients, r)
		return r
	}
	for _, step := range steps {
		timeout := step.GetTimeout().AsDuration()
		for r := uint32(0); r <= step.GetRepeats(); r++ {
			res.reset()
			res.resolve(bs, b, step.GetTargets(), t, in.Details.GetReferrer())
			reached := false
			for _, p := range res.People {
				chs := Usable(p.Contacts, step.GetChannels())
				reached = reached || len(chs) > 0
				ev.Timeline = append(ev.Timeline, Contact{Step: step.GetIndex(), Repeat: r, At: t, Recipient: recipient(p), Channels: chs})
			}
			if !reached {
				ev.Unreached = append(ev.Unreached, Unreached{Step: step.GetIndex(), Repeat: r, At: t, Problem: unreachedProblem(res)})
			}
			t = t.Add(timeout)
		}
	}
	ev.FailsafeAt = t
	return ev, nil
}

func unreachedProblem(res Resolution) string {
	if len(res.People) > 0 {
		return "nobody resolved has a contact point on the step's channels"
	}
	if len(res.Problems) == 0 {
		return "the step resolves to nobody"
	}
	return res.ProblemText()
}

// Gap is an hour at which a step of a policy reaches nobody.
type Gap struct {
	PolicyID string
	Step     uint32
	At       time.Time
	Problem  string
}

// CheckReachability checks every step of every policy of the tenant at
// every hour from `from` for `hours` hours: the step's targets must resolve
// to at least one person with a contact point on one of the step's
// channels. REFERRER and REFERRER_TEAM targets depend on the alert and are
// not counted; a step with only such targets is reported once, at from, as
// unverifiable.
func CheckReachability(bs Bundles, tenant string, from time.Time, hours int) ([]Gap, error) {
	b, ok := bs.Bundle(tenant)
	if !ok {
		return nil, fmt.Errorf("check reachability of tenant %q: %w", tenant, ErrNoBundle)
	}
	var gaps []Gap
	for _, id := range b.PolicyOrder {
		p := b.Policies[id]
		for i, step := range p.Steps {
			var targets []*eventsv1.Target
			for _, t := range step.Targets {
				if t.Kind == eventsv1.TargetKind_TARGET_KIND_REFERRER || t.Kind == eventsv1.TargetKind_TARGET_KIND_REFERRER_TEAM {
					continue
				}
				targets = append(targets, &eventsv1.Target{Kind: t.Kind, Ref: t.Ref, Tenant: t.Tenant})
			}
			if len(targets) == 0 {
				gaps = append(gaps, Gap{PolicyID: id, Step: uint32(i), At: from,
					Problem: "the step only targets the referrer or the referrer's team, which depend on the alert: add a rota, person or fail-safe target so it always reaches someone"})
				continue
			}
			for h := 0; h < hours; h++ {
				at := from.Add(time.Duration(h) * time.Hour)
				res, err := Resolve(bs, tenant, targets, at, nil)
				if err != nil {
					return nil, err
				}
				reached := false
				for _, person := range res.People {
					if len(Usable(person.Contacts, step.Channels)) > 0 {
						reached = true
						break
					}
				}
				if !reached {
					gaps = append(gaps, Gap{PolicyID: id, Step: uint32(i), At: at, Problem: unreachedProblem(res)})
				}
			}
		}
	}
	return gaps, nil
}
