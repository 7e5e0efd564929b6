package routing_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
	"github.com/herald-health/herald/services/rules/internal/domain/routing"
)

var (
	sms   = eventsv1.Channel_CHANNEL_SMS
	email = eventsv1.Channel_CHANNEL_EMAIL
	teams = eventsv1.Channel_CHANNEL_TEAMS
)

type planned struct {
	step, repeat uint32
	after        time.Duration
	person, role string
	channels     []eventsv1.Channel
}

func flatten(at time.Time, tl []routing.Contact) []planned {
	var out []planned
	for _, c := range tl {
		out = append(out, planned{c.Step, c.Repeat, c.At.Sub(at), c.Recipient.GetPersonId(), c.Recipient.GetRole(), c.Channels})
	}
	return out
}

func TestEvaluatePlansTheWholeTimeline(t *testing.T) {
	bs := demo(t)
	// Given a critical alert from the ED consultant on a Wednesday morning.
	at := utc(t, "2026-01-14T10:00:00Z")
	in := routing.Input{Tenant: "RZZ", Kind: routing.KindRaised, Details: alert{flag: critical, referrer: "7100001", team: "ED"}.details(), At: at}
	// When it is evaluated.
	ev, err := routing.Evaluate(bs, in)
	require.NoError(t, err)
	// Then every send is planned with who, when and through what.
	m := time.Minute
	require.Equal(t, []planned{
		{0, 0, 0, "rzz-dr-ashworth", "referrer", []eventsv1.Channel{sms, email}},
		{0, 0, 0, "rzz-dr-bello", "oncall:acute-medicine-registrar", []eventsv1.Channel{sms, email}},
		{0, 1, 10 * m, "rzz-dr-ashworth", "referrer", []eventsv1.Channel{sms, email}},
		{0, 1, 10 * m, "rzz-dr-bello", "oncall:acute-medicine-registrar", []eventsv1.Channel{sms, email}},
		{1, 0, 20 * m, "rzz-dr-evans", "oncall:consultant-radiologist", []eventsv1.Channel{sms, email}},
		{1, 0, 20 * m, "rzz-dr-ashworth", "team:emergency-department", []eventsv1.Channel{sms, email}},
		{1, 1, 30 * m, "rzz-dr-evans", "oncall:consultant-radiologist", []eventsv1.Channel{sms, email}},
		{1, 1, 30 * m, "rzz-dr-ashworth", "team:emergency-department", []eventsv1.Channel{sms, email}},
		{2, 0, 40 * m, "rzz-site-manager-day", "oncall:site-manager", []eventsv1.Channel{sms, teams, email}},
		{3, 0, 55 * m, "rzz-fso-patel", "failsafe-officer", []eventsv1.Channel{sms, email}},
		{3, 0, 55 * m, "net-failsafe-ibrahim", "network-failsafe-team", []eventsv1.Channel{sms, email}},
		{3, 0, 55 * m, "net-failsafe-jones", "network-failsafe-team", []eventsv1.Channel{sms, email}},
		{3, 1, 85 * m, "rzz-fso-patel", "failsafe-officer", []eventsv1.Channel{sms, email}},
		{3, 1, 85 * m, "net-failsafe-ibrahim", "network-failsafe-team", []eventsv1.Channel{sms, email}},
		{3, 1, 85 * m, "net-failsafe-jones", "network-failsafe-team", []eventsv1.Channel{sms, email}},
		{3, 2, 115 * m, "rzz-fso-patel", "failsafe-officer", []eventsv1.Channel{sms, email}},
		{3, 2, 115 * m, "net-failsafe-ibrahim", "network-failsafe-team", []eventsv1.Channel{sms, email}},
		{3, 2, 115 * m, "net-failsafe-jones", "network-failsafe-team", []eventsv1.Channel{sms, email}},
	}, flatten(at, ev.Timeline))
	require.Equal(t, at.Add(145*m), ev.FailsafeAt)
	require.Empty(t, ev.Unreached)

	// And the routing decision is exactly Route's.
	dec, err := routing.Route(bs, in)
	require.NoError(t, err)
	require.True(t, proto.Equal(dec.Routed, ev.Routed))
}

func TestEvaluateResolvesEachSendAtItsOwnInstant(t *testing.T) {
	bs := demo(t)
	// Given an alert whose referrer is unknown, ten minutes before the
	// registrars hand over (20:00 local).
	at := utc(t, "2026-01-14T19:50:00Z")
	ev, err := routing.Evaluate(bs, routing.Input{Tenant: "RZZ", Kind: routing.KindRaised, Details: alert{flag: critical, referrer: "GMC-UNKNOWN"}.details(), At: at})
	require.NoError(t, err)
	got := flatten(at, ev.Timeline)
	// Then the first send goes to the day registrar and the repeat to the night one.
	require.Equal(t, planned{0, 0, 0, "rzz-dr-bello", "oncall:acute-medicine-registrar", []eventsv1.Channel{sms, email}}, got[0])
	require.Equal(t, planned{0, 1, 10 * time.Minute, "rzz-dr-davies", "oncall:acute-medicine-registrar", []eventsv1.Channel{sms, email}}, got[1])
	// And step 1 (20:10) reaches the evening radiologist; the unknown referrer has no team.
	require.Equal(t, "rzz-dr-fraser", got[2].person)
}

func TestEvaluateReportsSendsThatReachNobody(t *testing.T) {
	// Given a bundle with a weekend-only rota, a referrer-only step and a
	// step whose people lack its channel, and an alert on a Wednesday.
	at := utc(t, "2026-01-14T10:00:00Z")
	ev, err := routing.Evaluate(set{"RZX": gappyBundle(t)}, routing.Input{Tenant: "RZX", Kind: routing.KindRaised,
		Details: alert{flag: urgent, referrer: "nobody"}.details(), At: at})
	require.NoError(t, err)
	// Then every send is reported unreached, with the reason.
	require.Len(t, ev.Unreached, 3)
	require.Equal(t, routing.Unreached{Step: 0, At: at, Problem: "target 0 (oncall weekend): nobody"}, ev.Unreached[0])
	require.Equal(t, routing.Unreached{Step: 1, At: at.Add(time.Hour), Problem: "target 0: the referrer is not in the directory"}, ev.Unreached[1])
	require.Equal(t, "nobody resolved has a contact point on the step's channels", ev.Unreached[2].Problem)
	// And the person without a usable channel is still in the timeline.
	require.Len(t, ev.Timeline, 1)
	require.Empty(t, ev.Timeline[0].Channels)
	require.Equal(t, at.Add(3*time.Hour), ev.FailsafeAt)
}

func TestResolveTargets(t *testing.T) {
	bs := demo(t)
	wed := utc(t, "2026-01-14T10:00:00Z")
	cases := []struct {
		name     string
		tenant   string
		target   *eventsv1.Target
		referrer *eventsv1.Clinician
		want     []string // tenant/person/role
		problem  string
	}{
		{"referrer by GMC number", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER}, &eventsv1.Clinician{Id: "7100007"}, []string{"RZZ/rzz-dr-gupta/referrer"}, ""},
		{"referrer by local id", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER}, &eventsv1.Clinician{Id: "RZZ-C0001"}, []string{"RZZ/rzz-dr-ashworth/referrer"}, ""},
		{"unknown referrer", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER}, &eventsv1.Clinician{Id: "9999999"}, nil, "the referrer is not in the directory"},
		{"no referrer", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER}, nil, nil, "names no referrer"},
		{"referrer's team by the source's team name", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER_TEAM}, &eventsv1.Clinician{Id: "9999999", Team: "AMU"}, []string{"RZZ/rzz-dr-bello/team:acute-medicine", "RZZ/rzz-dr-chen/team:acute-medicine", "RZZ/rzz-dr-davies/team:acute-medicine"}, ""},
		{"referrer's team from the directory", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER_TEAM}, &eventsv1.Clinician{Id: "7100007"}, []string{"RZZ/rzz-dr-gupta/team:respiratory"}, ""},
		{"referrer's team unknown", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER_TEAM}, &eventsv1.Clinician{Id: "x", Team: "Nowhere"}, nil, "the referrer's team is not in the directory"},
		{"on-call role through the rota", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_ONCALL_ROLE, Ref: "consultant-radiologist"}, nil, []string{"RZZ/rzz-dr-evans/oncall:consultant-radiologist"}, ""},
		{"unknown rota", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_ONCALL_ROLE, Ref: "nope"}, nil, nil, "rota nope is not defined"},
		{"named person", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_PERSON, Ref: "rzz-cancer-tracker-okafor"}, nil, []string{"RZZ/rzz-cancer-tracker-okafor/named"}, ""},
		{"fail-safe officer", "RZY", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER}, nil, []string{"RZY/rzy-fso-quinn/failsafe-officer"}, ""},
		{"network fail-safe team in another trust", "RZY", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_NETWORK_FAILSAFE_TEAM}, nil, []string{"RZZ/net-failsafe-ibrahim/network-failsafe-team", "RZZ/net-failsafe-jones/network-failsafe-team"}, ""},
		{"role in another trust", "RZY", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_OTHER_TRUST_ROLE, Tenant: "RZZ", Ref: "consultant-radiologist"}, nil, []string{"RZZ/rzz-dr-evans/oncall:RZZ/consultant-radiologist"}, ""},
		{"network team of a trust without a bundle", "RZY", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_NETWORK_FAILSAFE_TEAM, Ref: "t", Tenant: "RXX"}, nil, nil, "target 0: trust RXX (network fail-safe team) has no active bundle"},
		{"network team not defined", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_NETWORK_FAILSAFE_TEAM, Ref: "nope"}, nil, nil, "target 0: network fail-safe team nope is not defined"},
		{"rota not defined in the other trust", "RZY", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_OTHER_TRUST_ROLE, Tenant: "RZZ", Ref: "nope"}, nil, nil, "target 0: rota nope is not defined in trust RZZ"},
		{"person not in the directory", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_PERSON, Ref: "ghost"}, nil, nil, "target 0: person ghost is not in the directory"},
		{"unsupported kind", "RZZ", &eventsv1.Target{Kind: eventsv1.TargetKind(99)}, nil, nil, "target 0: kind 99 is not supported"},
		{"role in a trust without a bundle", "RZY", &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_OTHER_TRUST_ROLE, Tenant: "RXX", Ref: "x"}, nil, nil, "trust RXX has no active bundle"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := routing.Resolve(bs, tc.tenant, []*eventsv1.Target{tc.target}, wed, tc.referrer)
			require.NoError(t, err)
			var got []string
			for _, p := range res.People {
				got = append(got, p.Tenant+"/"+p.Person.ID+"/"+p.Role)
				require.NotEmpty(t, p.Contacts)
			}
			require.Equal(t, tc.want, got)
			if tc.problem != "" {
				require.Len(t, res.Problems, 1)
				require.Contains(t, res.Problems[0].String(), tc.problem)
			} else {
				require.Empty(t, res.Problems)
			}
		})
	}
	// Contact points keep the person's order of preference.
	res, err := routing.Resolve(bs, "RZZ", []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_PERSON, Ref: "rzz-dr-davies"}}, wed, nil)
	require.NoError(t, err)
	require.Equal(t, []eventsv1.Channel{email, sms}, []eventsv1.Channel{res.People[0].Contacts[0].Channel, res.People[0].Contacts[1].Channel})
	// A person named by two targets is contacted once.
	res, err = routing.Resolve(bs, "RZZ", []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER}, {Kind: eventsv1.TargetKind_TARGET_KIND_PERSON, Ref: "rzz-fso-patel"}}, wed, nil)
	require.NoError(t, err)
	require.Len(t, res.People, 1)
	require.Empty(t, res.Problems)
}

func TestDemoBundlesReachSomeoneEveryHourOfTheYear(t *testing.T) {
	bs := demo(t)
	for _, tenant := range []string{"RZZ", "RZY"} {
		// A year covers both daylight-saving changes and the overrides.
		gaps, err := routing.CheckReachability(bs, tenant, utc(t, "2026-01-01T00:30:00Z"), 365*24)
		require.NoError(t, err)
		require.Empty(t, gaps, tenant)
	}
}

func TestReachabilityReportsGaps(t *testing.T) {
	// Given a rota covering weekends only, a step that only targets the
	// referrer, and a step whose people lack the step's channel.
	b := gappyBundle(t)
	// When a week from Friday 22:00 UTC is checked.
	gaps, err := routing.CheckReachability(set{"RZX": b}, "RZX", utc(t, "2026-01-16T22:00:00Z"), 7*24)
	require.NoError(t, err)
	byStep := map[uint32][]routing.Gap{}
	for _, g := range gaps {
		require.Equal(t, "p", g.PolicyID)
		byStep[g.Step] = append(byStep[g.Step], g)
	}
	// Then step 0 has a gap at each of the week's 120 weekday hours.
	require.Len(t, byStep[0], 7*24-48)
	require.Equal(t, utc(t, "2026-01-16T22:00:00Z"), byStep[0][0].At)
	require.Contains(t, byStep[0][0].Problem, "oncall weekend")
	require.Equal(t, utc(t, "2026-01-19T00:00:00Z"), byStep[0][2].At)
	// Step 1 is reported once as unverifiable; step 2 every hour, for want of a channel.
	require.Len(t, byStep[1], 1)
	require.Contains(t, byStep[1][0].Problem, "only targets the referrer")
	require.Len(t, byStep[2], 7*24)
	require.True(t, strings.HasPrefix(byStep[2][0].Problem, "nobody resolved has a contact point on the step's channels"))
}

func gappyBundle(t *testing.T) *bundle.Bundle {
	t.Helper()
	files := []bundle.File{{Name: "b.yaml", Content: []byte(`tenant: RZX
version: "1"
failsafe: {officer: fso, queue: q, policy: p, default_category: URGENT}
categories:
  - {code: CRITICAL, rank: 1, clocks: {acknowledge: 1h}, policy: p}
  - {code: URGENT, rank: 2, clocks: {acknowledge: 1h}, policy: p}
  - {code: CANCER, rank: 3, clocks: {acknowledge: 1h}, policy: p}
  - {code: SIGNIFICANT_UNEXPECTED, rank: 4, clocks: {acknowledge: 1h}, policy: p}
policies:
  - id: p
    steps:
      - {targets: [{kind: oncall, ref: weekend}], timeout: 1h, channels: [sms]}
      - {targets: [{kind: referrer}], timeout: 1h, channels: [sms]}
      - {targets: [{kind: failsafe_officer}], timeout: 1h, channels: [teams]}
people:
  - {id: fso, contacts: [{channel: sms, address: "+447700900001"}]}
rotas:
  - id: weekend
    shifts: [{days: [sat, sun], start: "00:00", end: "00:00", people: [fso]}]
`)}}
	b, err := bundle.Parse(files)
	require.NoError(t, err, "%v", bundle.Problems(err))
	return b
}
