package routing

import (
	"fmt"
	"strings"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// Resolved is a person chosen by resolving targets, with their contact
// points in order of preference.
type Resolved struct {
	Person *bundle.Person
	// Tenant is the trust whose directory holds the person.
	Tenant string
	// Role is why the person was chosen: referrer, team:<id>, oncall:<rota>,
	// oncall:<tenant>/<rota>, named, failsafe-officer, network-failsafe-team.
	Role     string
	Contacts []bundle.Contact
}

// Recipient returns the event form of the person.
func (r Resolved) Recipient() *eventsv1.Recipient {
	return &eventsv1.Recipient{PersonId: r.Person.ID, Role: r.Role, Tenant: r.Tenant}
}

// Problem says why a target resolved to nobody. It holds no contact
// details; String renders it.
type Problem struct {
	Target int
	format string
	args   [2]string
}

func (p Problem) String() string {
	switch p.format {
	case "":
		return fmt.Sprintf("target %d: nobody", p.Target)
	default:
		return fmt.Sprintf("target %d"+p.format, p.Target, p.args[0], p.args[1])
	}
}

// Resolution is the outcome of resolving a step's targets.
type Resolution struct {
	// People in target order, each once (the first role that chose them).
	People []Resolved
	// Problems say why a target resolved to nobody.
	Problems []Problem
	hits     int
}

// problem records a problem of target i. format continues "target %d" and
// consumes exactly two string arguments (%.0s for an unused one), so the
// text is only formatted when someone reads it.
func (r *Resolution) problem(i int, format string, args ...string) {
	p := Problem{Target: i, format: format}
	copy(p.args[:], args)
	r.Problems = append(r.Problems, p)
}

// ProblemText joins the problems' texts.
func (r *Resolution) ProblemText() string {
	parts := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		parts[i] = p.String()
	}
	return strings.Join(parts, "; ")
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
	res.resolve(bs, b, targets, at, referrer)
	return res, nil
}

// resolve appends the people of targets to r (reset it to reuse it).
func (r *Resolution) resolve(bs Bundles, b *bundle.Bundle, targets []*eventsv1.Target, at time.Time, referrer *eventsv1.Clinician) {
	for i, t := range targets {
		resolveTarget(bs, b, t, at, referrer, r, i)
	}
}

func (r *Resolution) reset() {
	r.People, r.Problems, r.hits = r.People[:0], r.Problems[:0], 0
}

func resolveTarget(bs Bundles, b *bundle.Bundle, t *eventsv1.Target, at time.Time, referrer *eventsv1.Clinician, res *Resolution, i int) {
	hitsBefore, problemsBefore := res.hits, len(res.Problems)
	switch t.GetKind() {
	case eventsv1.TargetKind_TARGET_KIND_REFERRER:
		if referrer.GetId() == "" {
			res.problem(i, ": the alert names no referrer%.0s%.0s")
			return
		}
		p, ok := b.PersonByClinicianID(referrer.GetId())
		if !ok {
			res.problem(i, ": the referrer is not in the directory%.0s%.0s")
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
			res.problem(i, ": the referrer's team is not in the directory%.0s%.0s")
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
			res.problem(i, ": rota %s is not defined%.0s", t.GetRef())
			return
		}
		for _, id := range rota.OnCall(at) {
			res.add(b.Tenant, b.People[id], rota.Role)
		}
	case eventsv1.TargetKind_TARGET_KIND_PERSON:
		p, ok := b.People[t.GetRef()]
		if !ok {
			res.problem(i, ": person %s is not in the directory%.0s", t.GetRef())
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
				res.problem(i, ": trust %s (network fail-safe team) has no active bundle%.0s", ref.Tenant)
				return
			}
			owner = other
		}
		team, ok := owner.Teams[ref.Team]
		if !ok {
			res.problem(i, ": network fail-safe team %s is not defined%.0s", ref.Team)
			return
		}
		for _, id := range team.Members {
			res.add(owner.Tenant, owner.People[id], "network-failsafe-team")
		}
	case eventsv1.TargetKind_TARGET_KIND_OTHER_TRUST_ROLE:
		other, ok := bs.Bundle(t.GetTenant())
		if !ok {
			res.problem(i, ": trust %s has no active bundle%.0s", t.GetTenant())
			return
		}
		rota, ok := other.Rotas[t.GetRef()]
		if !ok {
			res.problem(i, ": rota %s is not defined in trust %s", t.GetRef(), t.GetTenant())
			return
		}
		for _, id := range rota.OnCall(at) {
			res.add(other.Tenant, other.People[id], rota.RemoteRole)
		}
	default:
		res.problem(i, ": kind %s is not supported%.0s", t.GetKind().String())
		return
	}
	if res.hits == hitsBefore && len(res.Problems) == problemsBefore {
		res.problem(i, " (%s): nobody%.0s", targetLabel(t))
	}
}

func (r *Resolution) add(tenant string, p *bundle.Person, role string) {
	if p == nil {
		return
	}
	r.hits++
	for _, have := range r.People {
		if have.Person.ID == p.ID && have.Tenant == tenant {
			return
		}
	}
	r.People = append(r.People, Resolved{Person: p, Tenant: tenant, Role: role, Contacts: p.Contacts})
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
// step's channels, in the step's order. When the person has them all, it
// returns channels itself (shared: do not modify).
func Usable(contacts []bundle.Contact, channels []eventsv1.Channel) []eventsv1.Channel {
	has := func(ch eventsv1.Channel) bool {
		for _, c := range contacts {
			if c.Channel == ch {
				return true
			}
		}
		return false
	}
	n := 0
	for _, ch := range channels {
		if has(ch) {
			n++
		}
	}
	if n == len(channels) {
		return channels
	}
	out := make([]eventsv1.Channel, 0, n)
	for _, ch := range channels {
		if has(ch) {
			out = append(out, ch)
		}
	}
	return out
}
