package routing_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
	"github.com/herald-health/herald/services/rules/internal/domain/routing"
)

const (
	critical    = eventsv1.Category_CATEGORY_CRITICAL
	urgent      = eventsv1.Category_CATEGORY_URGENT
	significant = eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED
	cancer      = eventsv1.Category_CATEGORY_CANCER
	local       = eventsv1.Category_CATEGORY_LOCAL
	none        = eventsv1.Category_CATEGORY_UNSPECIFIED
)

func TestClassificationWithCELRules(t *testing.T) {
	bs := demo(t)
	weekdayMorning := "2026-01-14T10:00:00Z" // Wednesday, GMT
	weekdayNight := "2026-01-14T22:00:00Z"
	saturdayNoon := "2026-01-17T12:00:00Z"
	cases := []struct {
		name       string
		tenant     string
		at         string
		alert      alert
		want       eventsv1.Category
		wantLocal  string
		wantRule   string
		wantPolicy string
		wantReason string // substring; "" means no reason recorded
	}{
		{"the source's flag stands", "RZZ", weekdayMorning, alert{flag: critical}, critical, "", "", "critical", ""},
		{"a rule upgrades urgent AA emergency CT", "RZZ", weekdayMorning, alert{flag: urgent, abnormal: []string{"AA"}, modality: "CT", class: "E"}, critical, "", "aa-emergency-cross-sectional", "critical", "rule aa-emergency-cross-sectional upgraded the source's URGENT: very abnormal flag"},
		{"AA on an outpatient CT is not critical; urgent stands", "RZZ", weekdayMorning, alert{flag: urgent, abnormal: []string{"AA"}, modality: "CT", class: "O"}, urgent, "", "", "urgent", ""},
		{"a rule of the same rank does not apply", "RZZ", weekdayMorning, alert{flag: urgent, abnormal: []string{"HH"}}, urgent, "", "", "urgent", ""},
		{"rules never downgrade the source", "RZZ", weekdayMorning, alert{flag: critical, phrases: []string{"suspicious of malignancy"}}, critical, "", "", "critical", ""},
		{"significant inpatient finding at night becomes urgent", "RZZ", weekdayNight, alert{flag: significant, class: "I"}, urgent, "", "inpatient-significant-out-of-hours", "urgent", "upgraded the source's SIGNIFICANT_UNEXPECTED"},
		{"the same finding in the day stands", "RZZ", weekdayMorning, alert{flag: significant, class: "I"}, significant, "", "", "significant", ""},
		{"the same finding at a weekend becomes urgent", "RZZ", saturdayNoon, alert{flag: significant, class: "I"}, urgent, "", "inpatient-significant-out-of-hours", "urgent", ""},
		{"time of day is local: 19:30 UTC in July is 20:30 BST", "RZZ", "2026-07-15T19:30:00Z", alert{flag: significant, class: "I"}, urgent, "", "inpatient-significant-out-of-hours", "urgent", ""},
		{"19:30 UTC in January is 19:30 GMT: stands", "RZZ", "2026-01-15T19:30:00Z", alert{flag: significant, class: "I"}, significant, "", "", "significant", ""},
		{"no flag, HH: a rule classifies", "RZZ", weekdayMorning, alert{abnormal: []string{"HH"}}, urgent, "", "any-very-abnormal", "urgent", "rule any-very-abnormal (the source flagged no category)"},
		{"no flag, always-alert phrase", "RZZ", weekdayMorning, alert{phrases: []string{"tension pneumothorax"}}, critical, "", "always-alert-phrases", "critical", ""},
		{"no flag, cancer phrase", "RZZ", weekdayMorning, alert{phrases: []string{"appearances suspicious of malignancy"}}, cancer, "", "suspected-cancer-phrases", "cancer", ""},
		{"cancer upgraded by an always-alert phrase", "RZZ", weekdayMorning, alert{flag: cancer, phrases: []string{"pulmonary embolism"}}, critical, "", "always-alert-phrases", "critical", "upgraded the source's CANCER"},
		{"the most severe matching rule wins", "RZZ", weekdayMorning, alert{abnormal: []string{"AA"}, modality: "MR", class: "E", phrases: []string{"malignant"}}, critical, "", "aa-emergency-cross-sectional", "critical", ""},
		{"no flag and no rule: the trust default", "RZZ", weekdayMorning, alert{modality: "XR"}, urgent, "", "", "urgent", "no rule matched: the trust's default URGENT"},
		{"a rule classifies a local category", "RZZ", weekdayMorning, alert{code: "EDD", class: "E"}, local, "ED_DISCREPANCY", "ed-discrepancy-code", "significant", ""},
		{"a local flag stands", "RZZ", weekdayMorning, alert{flag: local, code: "ED_DISCREPANCY"}, local, "ED_DISCREPANCY", "", "significant", ""},
		{"a local flag is upgraded", "RZZ", weekdayMorning, alert{flag: local, code: "ED_DISCREPANCY", abnormal: []string{"LL"}}, urgent, "", "any-very-abnormal", "urgent", "upgraded the source's ED_DISCREPANCY"},
		{"an unknown local flag counts as no flag", "RZZ", weekdayMorning, alert{flag: local, code: "NOPE"}, urgent, "", "", "urgent", "trust's default"},
		{"each trust has its own rules: RZY treats AA as critical", "RZY", weekdayMorning, alert{flag: urgent, abnormal: []string{"AA"}, class: "O"}, critical, "", "aa-any", "critical", ""},
		{"RZY night urgent inpatient", "RZY", "2026-01-14T22:30:00Z", alert{flag: urgent, class: "I"}, critical, "", "night-urgent-inpatient", "critical", ""},
		{"RZY evening urgent inpatient stands", "RZY", "2026-01-14T21:30:00Z", alert{flag: urgent, class: "I"}, urgent, "", "", "urgent", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Given the demo bundles and an alert; when it is routed at an instant.
			dec, err := routing.Route(bs, routing.Input{Tenant: tc.tenant, Kind: routing.KindRaised, Details: tc.alert.details(), At: utc(t, tc.at)})
			require.NoError(t, err)
			// Then the category, rule, policy and reason are as the trust says.
			r := dec.Routed
			require.Equal(t, tc.want, r.GetCategory())
			require.Equal(t, tc.wantLocal, r.GetLocalCategory())
			require.Equal(t, tc.wantRule, r.GetRuleId())
			require.Equal(t, tc.wantPolicy, r.GetPolicy().GetRef().GetPolicyId())
			if tc.wantReason == "" && tc.wantRule == "" {
				require.Empty(t, r.GetClassificationReason())
			} else {
				require.Contains(t, r.GetClassificationReason(), tc.wantReason)
			}
			require.Empty(t, dec.RuleErrors)
		})
	}
}

func TestAmendmentMayUpgradeButNeverSilentlyDowngrade(t *testing.T) {
	bs := demo(t)
	at := utc(t, "2026-01-14T10:00:00Z")
	cases := []struct {
		name         string
		previous     *routing.Previous
		alert        alert
		want         eventsv1.Category
		wantPrevious eventsv1.Category
		wantReason   string
	}{
		{"upgrade", &routing.Previous{Category: urgent, Rank: 2}, alert{flag: critical}, critical, urgent, ""},
		{"downgrade is refused and recorded", &routing.Previous{Category: critical, Rank: 1}, alert{flag: urgent}, critical, critical, "the amendment classifies the finding as URGENT; kept CRITICAL"},
		{"downgrade of a local category is refused", &routing.Previous{Category: urgent, Rank: 2}, alert{flag: local, code: "ED_DISCREPANCY"}, urgent, urgent, "kept URGENT"},
		{"same category", &routing.Previous{Category: urgent, Rank: 2}, alert{flag: urgent}, urgent, urgent, ""},
		{"unknown previous routing: classified afresh", nil, alert{flag: significant}, significant, none, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dec, err := routing.Route(bs, routing.Input{Tenant: "RZZ", Kind: routing.KindAmended, Details: tc.alert.details(), At: at, Previous: tc.previous})
			require.NoError(t, err)
			require.Equal(t, tc.want, dec.Routed.GetCategory())
			require.Equal(t, tc.wantPrevious, dec.Routed.GetPreviousCategory())
			if tc.wantReason != "" {
				require.Contains(t, dec.Routed.GetClassificationReason(), tc.wantReason)
				require.Empty(t, dec.Routed.GetRuleId())
			}
		})
	}
}

func TestQuarantinedAlertGoesToTheFailsafePolicy(t *testing.T) {
	dec, err := routing.Route(demo(t), routing.Input{Tenant: "RZZ", Kind: routing.KindQuarantined, Details: alert{flag: critical}.details(),
		At: utc(t, "2026-01-14T10:00:00Z"), QuarantineFields: []string{"PID-3"}})
	require.NoError(t, err)
	require.Equal(t, "quarantine", dec.Ref.GetPolicyId())
	require.Equal(t, critical, dec.Routed.GetCategory())
	require.Equal(t, "quarantined (PID-3): routed to the fail-safe policy quarantine", dec.Routed.GetClassificationReason())
}

// A quarantined report that names its referrer reaches them at the fail-safe
// policy's first step, besides the fail-safe officer; one without a referrer
// goes to the fail-safe team alone. The bundle's shared snapshot is left as
// it was.
func TestQuarantinedAlertAlsoTellsAKnownReferrer(t *testing.T) {
	bs := demo(t)
	at := utc(t, "2026-01-14T10:00:00Z")
	kinds := func(p *eventsv1.EscalationPolicy) []eventsv1.TargetKind {
		var out []eventsv1.TargetKind
		for _, tg := range p.GetSteps()[0].GetTargets() {
			out = append(out, tg.GetKind())
		}
		return out
	}
	dec, err := routing.Route(bs, routing.Input{Tenant: "RZZ", Kind: routing.KindQuarantined, Details: alert{flag: critical, referrer: "C1234567"}.details(),
		At: at, QuarantineFields: []string{"PID-3"}})
	require.NoError(t, err)
	require.Equal(t, "quarantine", dec.Ref.GetPolicyId())
	require.Equal(t, []eventsv1.TargetKind{eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER, eventsv1.TargetKind_TARGET_KIND_REFERRER}, kinds(dec.Routed.GetPolicy()))
	require.Contains(t, dec.Routed.GetClassificationReason(), "its first step also to the referrer")

	none, err := routing.Route(bs, routing.Input{Tenant: "RZZ", Kind: routing.KindQuarantined, Details: alert{flag: critical}.details(),
		At: at, QuarantineFields: []string{"ORC-12"}})
	require.NoError(t, err)
	require.Equal(t, []eventsv1.TargetKind{eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER}, kinds(none.Routed.GetPolicy()), "the shared snapshot gained no referrer")
}

func TestClocksStartAtReceiptUnlessTheCategorySaysReported(t *testing.T) {
	at := utc(t, "2026-01-14T10:00:00Z")
	cases := []struct {
		name      string
		start     bundle.ClockStart
		reported  time.Time
		wantStart time.Time
	}{
		{"received: a report verified 20 minutes ago runs from receipt", bundle.ClockStartReceived, at.Add(-20 * time.Minute), at},
		{"received: a back-dated report (8 days) runs from receipt", bundle.ClockStartReceived, at.Add(-8 * 24 * time.Hour), at},
		{"reported: from the report's verification", bundle.ClockStartReported, at.Add(-20 * time.Minute), at.Add(-20 * time.Minute)},
		{"no report time: from routing", bundle.ClockStartReported, time.Time{}, at},
		{"a report time in the future is ignored", bundle.ClockStartReported, at.Add(time.Hour), at},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs := demo(t)
			b, _ := bs.Bundle("RZZ")
			cat, ok := b.Category("CRITICAL")
			require.True(t, ok)
			cat.ClockStart = tc.start
			dec, err := routing.Route(bs, routing.Input{Tenant: "RZZ", Kind: routing.KindRaised, Details: alert{flag: critical, reported: tc.reported}.details(), At: at})
			require.NoError(t, err)
			c := dec.Routed.GetClocks()
			require.Equal(t, tc.wantStart, c.GetStartedAt().AsTime())
			require.Equal(t, tc.wantStart.Add(time.Hour), c.GetCommunicateBy().AsTime())
			require.Equal(t, tc.wantStart.Add(time.Hour), c.GetAcknowledgeBy().AsTime())
			require.Equal(t, tc.wantStart.Add(4*time.Hour), c.GetActionBy().AsTime())
			if tc.reported.IsZero() {
				require.Nil(t, c.GetReportedAt())
			} else {
				require.Equal(t, tc.reported, c.GetReportedAt().AsTime(), "the source's time is kept for audit")
			}
		})
	}
	bs := demo(t)
	// A category without an action clock leaves it unset.
	dec, err := routing.Route(bs, routing.Input{Tenant: "RZZ", Kind: routing.KindRaised, Details: alert{flag: local, code: "ED_DISCREPANCY"}.details(), At: at})
	require.NoError(t, err)
	require.Nil(t, dec.Routed.GetClocks().GetActionBy())
	require.Equal(t, at.Add(48*time.Hour), dec.Routed.GetClocks().GetAcknowledgeBy().AsTime())
}

func TestPolicySnapshot(t *testing.T) {
	bs := demo(t)
	dec, err := routing.Route(bs, routing.Input{Tenant: "RZY", Kind: routing.KindRaised, Details: alert{flag: critical}.details(), At: utc(t, "2026-01-14T10:00:00Z")})
	require.NoError(t, err)
	p := dec.Routed.GetPolicy()
	require.True(t, proto.Equal(dec.Ref, p.GetRef()))
	require.Equal(t, &eventsv1.PolicyRef{PolicyId: "critical", Version: bs["RZY"].Version, ContentHash: bs["RZY"].Hash}, dec.Ref)
	require.Equal(t, "RZY-failsafe", p.GetFailsafeQueue())
	require.Len(t, p.GetSteps(), 4)
	s0 := p.GetSteps()[0]
	require.Equal(t, uint32(0), s0.GetIndex())
	require.Equal(t, 10*time.Minute, s0.GetTimeout().AsDuration())
	require.Equal(t, uint32(1), s0.GetRepeats())
	require.Equal(t, eventsv1.AckMode_ACK_MODE_ANY_ONE, s0.GetAckMode())
	require.Equal(t, []eventsv1.Channel{eventsv1.Channel_CHANNEL_SMS, eventsv1.Channel_CHANNEL_EMAIL}, s0.GetChannels())
	require.Equal(t, eventsv1.TargetKind_TARGET_KIND_REFERRER, s0.GetTargets()[0].GetKind())
	s1 := p.GetSteps()[1]
	require.True(t, proto.Equal(&eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_OTHER_TRUST_ROLE, Ref: "consultant-radiologist", Tenant: "RZZ"}, s1.GetTargets()[0]))
	s3 := p.GetSteps()[3]
	require.True(t, proto.Equal(&eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_NETWORK_FAILSAFE_TEAM, Ref: "network-failsafe", Tenant: "RZZ"}, s3.GetTargets()[1]))
}

func TestUnknownTenantHasNoBundle(t *testing.T) {
	_, err := routing.Route(demo(t), routing.Input{Tenant: "RXX", Kind: routing.KindRaised, Details: alert{flag: critical}.details(), At: time.Now()})
	require.True(t, errors.Is(err, routing.ErrNoBundle), "got %v", err)
}
