package routing

import (
	"fmt"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// Resolved is a person chosen by resolving targets, with their contact
// points in order of preference.
type Resolved struct {
	Recipient *eventsv1.Recipient
	Contacts  []bundle.Contact
}

// Resolution is the outcome of resolving a step's targets.
type Resolution struct {
	// People in target order, each once (the first role that chose them).
	People []Resolved
	// Problems say why a target resolved to nobody (no contact details).
	Problems []string
	hits     int
}

// Resolve turns targets into people at the instant at. The referrer (may be
// nil) answers REFERRER and REFERRER_TEAM targets. A target that resolves to
// nobody adds a problem rather than an error: the caller decides whether an
// empty step is a failure (notification) or a gap (reachability).
func Resolve(bs Bundles, tenant string, targets []*eventsv1.Target, at time.Time, referrer *eventsv1.Clinician) (Resolution, error) {
	b, ok := bs.Bundle(tenant)
	if !ok {
		return Resolution{}, fmt.Errorf("resolve targets of tenant %q: %w", tenant, ErrNoBundle)
	}
	var res Resolution
	for i, t := range targets {
		resolveTarget(bs, b, t, at, referrer, &res, i)
	}
	return res, nil
}

func resolveTarget(bs Bundles, b *bundle.Bundle, t *eventsv1.Target, at time.Time, referrer *eventsv1.Clinician, res *Resolution, i int) {
	hitsBefore, problemsBefore := res.hits, len(res.Problems)
	switch t.GetKind() {
	case eventsv1.TargetKind_TARGET_KIND_REFERRER:
		if referrer.GetId() == "" {
			res.Problems = append(res.Problems, fmt.Sprintf("target %d: the alert names no referrer", i))
			return
		}
		p, ok := b.PersonByClinicianID(referrer.GetId())
		if !ok {
			res.Problems = append(res.Problems, fmt.Sprintf("target %d: the referrer is not in the directory", i))
			return
		}
		res.add(b.Tenant, p, "referrer")
	case eventsv1.TargetKind_TARGET_KIND_REFERRER_TEAM:
		var teams []*bundle.Team
		if name := referrer.GetTeam(); name != "" {
			if team, ok := b.TeamByName(name); ok {
				teams = append(teams, team)
			}
		}
		if len(teams) == 0 && referrer.GetId() != "" {
			if p, ok := b.PersonByClinicianID(referrer.GetId()); ok {
				for _, id := range p.Teams {
					teams = append(teams, b.Teams[id])
				}
			}
		}
		if len(teams) == 0 {
			res.Problems = append(res.Problems, fmt.Sprintf("target %d: the referrer's team is not in the directory", i))
			return
		}
		for _, team := range teams {
			for _, id := range team.Members {
				res.add(b.Tenant, b.People[id], team.Role)
			}
		}
	case eventsv1.TargetKind_TARGET_KIND_ONCALL_ROLE:
		rota, ok := b.Rotas[t.GetRef()]
		if !ok {
			res.Problems = append(res.Problems, fmt.Sprintf("target %d: rota %s is not defined", i, t.GetRef()))
			return
		}
		for _, id := range rota.OnCall(at) {
			res.add(b.Tenant, b.People[id], rota.Role)
		}
	case eventsv1.TargetKind_TARGET_KIND_PERSON:
		p, ok := b.People[t.GetRef()]
		if !ok {
			res.Problems = append(res.Problems, fmt.Sprintf("target %d: person %s is not in the directory", i, t.GetRef()))
			return
		}
		res.add(b.Tenant, p, "named")
	case eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER:
		if p, ok := b.People[b.Failsafe.Officer]; ok {
			res.add(b.Tenant, p, "failsafe-officer")
		}
	case eventsv1.TargetKind_TARGET_KIND_NETWORK_FAILSAFE_TEAM:
		ref := b.NetworkFailsafe
		if t.GetRef() != "" {
			ref = bundle.TeamRef{Tenant: t.GetTenant(), Team: t.GetRef()}
		}
		owner := b
		if ref.Tenant != "" && ref.Tenant != b.Tenant {
			other, ok := bs.Bundle(ref.Tenant)
			if !ok {
				res.Problems = append(res.Problems, fmt.Sprintf("target %d: trust %s (network fail-safe team) has no active bundle", i, ref.Tenant))
				return
			}
			owner = other
		}
		team, ok := owner.Teams[ref.Team]
		if !ok {
			res.Problems = append(res.Problems, fmt.Sprintf("target %d: network fail-safe team %s is not defined", i, ref.Team))
			return
		}
		for _, id := range team.Members {
			res.add(owner.Tenant, owner.People[id], "network-failsafe-team")
		}
	case eventsv1.TargetKind_TARGET_KIND_OTHER_TRUST_ROLE:
		other, ok := bs.Bundle(t.GetTenant())
		if !ok {
			res.Problems = append(res.Problems, fmt.Sprintf("target %d: trust %s has no active bundle", i, t.GetTenant()))
			return
		}
		rota, ok := other.Rotas[t.GetRef()]
		if !ok {
			res.Problems = append(res.Problems, fmt.Sprintf("target %d: rota %s is not defined in trust %s", i, t.GetRef(), t.GetTenant()))
			return
		}
		for _, id := range rota.OnCall(at) {
			res.add(other.Tenant, other.People[id], rota.RemoteRole)
		}
	default:
		res.Problems = append(res.Problems, fmt.Sprintf("target %d: kind %s is not supported", i, t.GetKind()))
		return
	}
	if res.hits == hitsBefore && len(res.Problems) == problemsBefore {
		res.Problems = append(res.Problems, fmt.Sprintf("target %d (%s): nobody", i, targetLabel(t)))
	}
}

func (r *Resolution) add(tenant string, p *bundle.Person, role string) {
	if p == nil {
		return
	}
	r.hits++
	for _, have := range r.People {
		if have.Recipient.PersonId == p.ID && have.Recipient.Tenant == tenant {
			return
		}
	}
	r.People = append(r.People, Resolved{
		Recipient: &eventsv1.Recipient{PersonId: p.ID, Role: role, Tenant: tenant},
		Contacts:  p.Contacts,
	})
}

func targetLabel(t *eventsv1.Target) string {
	switch t.GetKind() {
	case eventsv1.TargetKind_TARGET_KIND_ONCALL_ROLE:
		return "oncall " + t.GetRef()
	case eventsv1.TargetKind_TARGET_KIND_OTHER_TRUST_ROLE:
		return "oncall " + t.GetTenant() + "/" + t.GetRef()
	default:
		return t.GetKind().String()
	}
}

// Usable returns the channels of a person's contact points that are in the
// step's channels, in the step's order.
func Usable(contacts []bundle.Contact, channels []eventsv1.Channel) []eventsv1.Channel {
	var out []eventsv1.Channel
	for _, ch := range channels {
		for _, c := range contacts {
			if c.Channel == ch {
				out = append(out, ch)
				break
			}
		}
	}
	return out
}
