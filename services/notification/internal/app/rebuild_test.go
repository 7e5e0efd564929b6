package app

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

func routed(alert string) *eventsv1.Event {
	return &eventsv1.Event{EventId: alert + "-routed", AlertId: alert, Tenant: "RZZ", Payload: &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{
		Category: eventsv1.Category_CATEGORY_URGENT, Policy: &eventsv1.EscalationPolicy{Steps: []*eventsv1.EscalationStep{{}, {Index: 1}}}}}}
}

func sent(alert, nid string, step uint32) *eventsv1.Event {
	return &eventsv1.Event{EventId: nid + "-sent", AlertId: alert, Payload: &eventsv1.Event_NotificationSent{NotificationSent: &eventsv1.NotificationSent{
		NotificationId: nid, Step: step, Recipient: &eventsv1.Recipient{PersonId: "p1"}, Channel: eventsv1.Channel_CHANNEL_EMAIL, Attempt: 1}}}
}

func failed(alert, nid string, permanent bool) *eventsv1.Event {
	return &eventsv1.Event{EventId: nid + "-failed", AlertId: alert, Payload: &eventsv1.Event_NotificationFailed{NotificationFailed: &eventsv1.NotificationFailed{
		NotificationId: nid, Recipient: &eventsv1.Recipient{PersonId: "p1"}, Channel: eventsv1.Channel_CHANNEL_SMS, Attempt: 2, Permanent: permanent}}}
}

func attempted(alert, nid string, attempt uint32) *eventsv1.Event {
	return &eventsv1.Event{EventId: fmt.Sprintf("%s-attempt-%d", nid, attempt), AlertId: alert, Payload: &eventsv1.Event_NotificationAttempted{NotificationAttempted: &eventsv1.NotificationAttempted{
		NotificationId: nid, Recipient: &eventsv1.Recipient{PersonId: "p1"}, Channel: eventsv1.Channel_CHANNEL_EMAIL, Attempt: attempt}}}
}

func escalated(alert string, step, repeat uint32) *eventsv1.Event {
	return &eventsv1.Event{EventId: fmt.Sprintf("%s-esc-%d-%d", alert, step, repeat), AlertId: alert, Payload: &eventsv1.Event_AlertEscalated{
		AlertEscalated: &eventsv1.AlertEscalated{ToStep: step, Repeat: repeat}}}
}

func TestRebuilder(t *testing.T) {
	tests := []struct {
		name      string
		given     []*eventsv1.Event
		wantPhase map[string]domain.Phase
		wantJobs  map[string][]Job
	}{
		{"given sent then recorded and the current step re-checked",
			[]*eventsv1.Event{routed("A"), sent("A", "n1", 0)},
			map[string]domain.Phase{"n1": domain.PhaseRecorded},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}}}},
		{"given a transient failure then pending (retried by the job)",
			[]*eventsv1.Event{routed("A"), failed("A", "n1", false)},
			map[string]domain.Phase{"n1": domain.PhasePending},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}}}},
		{"given a permanent failure then failed (next contact point)",
			[]*eventsv1.Event{routed("A"), failed("A", "n1", true)},
			map[string]domain.Phase{"n1": domain.PhaseFailed},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}}}},
		{"given sent then delivered then delivered",
			[]*eventsv1.Event{routed("A"), sent("A", "n1", 0), {EventId: "d", AlertId: "A", Payload: &eventsv1.Event_NotificationDelivered{
				NotificationDelivered: &eventsv1.NotificationDelivered{NotificationId: "n1"}}}},
			map[string]domain.Phase{"n1": domain.PhaseDelivered},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}}}},
		{"given an attempt with no outcome then in flight (sending): the job waits for it, never sends it again at once",
			[]*eventsv1.Event{routed("A"), attempted("A", "n1", 1)},
			map[string]domain.Phase{"n1": domain.PhaseSending},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}}}},
		{"given an attempt then its send then recorded",
			[]*eventsv1.Event{routed("A"), attempted("A", "n1", 1), sent("A", "n1", 0)},
			map[string]domain.Phase{"n1": domain.PhaseRecorded},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}}}},
		{"given an attempt then its transient failure then pending",
			[]*eventsv1.Event{routed("A"), attempted("A", "n1", 2), failed("A", "n1", false)},
			map[string]domain.Phase{"n1": domain.PhasePending},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}}}},
		{"given a failure then a late copy of the same attempt then still pending",
			[]*eventsv1.Event{routed("A"), failed("A", "n1", false), attempted("A", "n1", 2)},
			map[string]domain.Phase{"n1": domain.PhasePending},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}}}},
		{"given a failure then the next attempt then in flight",
			[]*eventsv1.Event{routed("A"), failed("A", "n1", false), attempted("A", "n1", 3)},
			map[string]domain.Phase{"n1": domain.PhaseSending},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}}}},
		{"given an attempt the decision then stopped (superseded) then cancelled, not in flight",
			[]*eventsv1.Event{routed("A"), attempted("A", "n1", 1), {EventId: "s", AlertId: "A", Payload: &eventsv1.Event_NotificationSuperseded{
				NotificationSuperseded: &eventsv1.NotificationSuperseded{Recipient: &eventsv1.Recipient{PersonId: "p1"}}}}},
			map[string]domain.Phase{"n1": domain.PhaseCancelled},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}}}},
		{"given acknowledged then no job",
			[]*eventsv1.Event{routed("A"), sent("A", "n1", 0), {EventId: "k", AlertId: "A", Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{}}}},
			map[string]domain.Phase{"n1": domain.PhaseRecorded},
			map[string][]Job{"A": nil}},
		{"given acknowledged with a step the log says nothing of then its job (the gate supersedes it: no silent skip)",
			[]*eventsv1.Event{routed("A"), sent("A", "n1", 0), escalated("A", 1, 0), {EventId: "k", AlertId: "A", Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{}}}},
			map[string]domain.Phase{"n1": domain.PhaseRecorded},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Step: 1, Cause: "rebuild"}}}},
		{"given acknowledged with only an attempt of a step (its decision cut short by the wipe) then its job (an attempt is not an outcome: no silent skip)",
			[]*eventsv1.Event{routed("A"), sent("A", "n1", 0), escalated("A", 1, 0), {EventId: "n2-attempt-1", AlertId: "A", Payload: &eventsv1.Event_NotificationAttempted{NotificationAttempted: &eventsv1.NotificationAttempted{
				NotificationId: "n2", Step: 1, Recipient: &eventsv1.Recipient{PersonId: "p2"}, Channel: eventsv1.Channel_CHANNEL_EMAIL, Attempt: 1}}},
				{EventId: "k", AlertId: "A", Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{}}}},
			map[string]domain.Phase{"n1": domain.PhaseRecorded, "n2": domain.PhaseSending},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Step: 1, Cause: "rebuild"}}}},
		{"given acknowledged with that step superseded then no job",
			[]*eventsv1.Event{routed("A"), sent("A", "n1", 0), escalated("A", 1, 0), {EventId: "s1", AlertId: "A", Payload: &eventsv1.Event_NotificationSuperseded{
				NotificationSuperseded: &eventsv1.NotificationSuperseded{Round: 1, Step: 1}}}, {EventId: "k", AlertId: "A", Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{}}}},
			map[string]domain.Phase{"n1": domain.PhaseRecorded},
			map[string][]Job{"A": nil}},
		{"given an escalation then a job for every step of the round (an earlier step's job may have been lost with Redis)",
			[]*eventsv1.Event{routed("A"), escalated("A", 1, 0)},
			map[string]domain.Phase{},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}, {Kind: JobStep, AlertID: "A", Round: 1, Step: 1, Cause: "rebuild"}}}},
		{"given repeats then each step at its latest repeat",
			[]*eventsv1.Event{routed("A"), escalated("A", 0, 1), escalated("A", 1, 0), escalated("A", 1, 1)},
			map[string]domain.Phase{},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Repeat: 1, Cause: "rebuild"}, {Kind: JobStep, AlertID: "A", Round: 1, Step: 1, Repeat: 1, Cause: "rebuild"}}}},
		{"given a re-routing then only the new round's steps",
			[]*eventsv1.Event{routed("A"), escalated("A", 1, 0), {EventId: "A-routed-2", AlertId: "A", Payload: routed("A").Payload}},
			map[string]domain.Phase{},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 2, Cause: "rebuild"}}}},
		{"given failsafe queued then the round's steps (a message not yet made still goes) and the failsafe job",
			[]*eventsv1.Event{routed("A"), {EventId: "f", AlertId: "A", Payload: &eventsv1.Event_FailsafeQueued{FailsafeQueued: &eventsv1.FailsafeQueued{}}}, sent("A", "n2", 2)},
			map[string]domain.Phase{"n2": domain.PhaseRecorded},
			map[string][]Job{"A": {{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"}, {Kind: JobStep, AlertID: "A", Round: 1, Step: 2, Failsafe: true, Cause: "rebuild"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rb := NewRebuilder()
			for _, ev := range tt.given {
				rb.Add(ev)
			}
			got := map[string]domain.Phase{}
			for _, r := range rb.Records() {
				got[r.NotificationID] = r.Phase
				require.Equal(t, r.Step == 2, r.Failsafe)
			}
			require.Equal(t, tt.wantPhase, got)
			require.Equal(t, tt.wantJobs, rb.Alerts())
		})
	}
}

// The in-doubt resends made before Redis was lost still count towards
// their cap after the rebuild (a message whose sending kills its worker
// must not loop because Redis was lost).
func TestRebuilderKeepsTheInDoubtResends(t *testing.T) {
	resend := attempted("A", "n1", 2)
	resend.EventId = "n1-attempt-2"
	resend.GetNotificationAttempted().InDoubtResend = 1
	rb := NewRebuilder()
	for _, ev := range []*eventsv1.Event{routed("A"), attempted("A", "n1", 1), resend} {
		rb.Add(ev)
	}
	recs := rb.Records()
	require.Len(t, recs, 1)
	require.Equal(t, domain.PhaseSending, recs[0].Phase)
	require.Equal(t, uint32(2), recs[0].Attempts)
	require.Equal(t, uint32(1), recs[0].InDoubt)
}
