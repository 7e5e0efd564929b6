package app

import (
	"testing"

	"github.com/stretchr/testify/require"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// After Redis is lost, the rebuild schedules the notice of every breach of
// the alert's round again (a notice already sent is a recorded record, so
// its recipient is skipped; one not yet sent goes now), and keeps a sent
// notice's record apart from the fail-safe step's.
func TestRebuildResumesBreachNotices(t *testing.T) {
	r := routed("A")
	r.GetAlertRouted().GetPolicy().BreachNotices = []*eventsv1.BreachNotice{{Clock: eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE,
		Targets: []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_PERSON, Ref: "lead"}}}}
	breached := &eventsv1.Event{EventId: "b", AlertId: "A", Payload: &eventsv1.Event_SlaBreached{SlaBreached: &eventsv1.SLABreached{
		Clock: eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE}}}
	notice := &eventsv1.Event{EventId: "n", AlertId: "A", Payload: &eventsv1.Event_BreachNoticeSent{BreachNoticeSent: &eventsv1.BreachNoticeSent{
		NotificationId: "bn1", Clock: eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE, Recipient: &eventsv1.Recipient{PersonId: "lead"},
		Channel: eventsv1.Channel_CHANNEL_EMAIL}}}
	rb := NewRebuilder()
	for _, ev := range []*eventsv1.Event{r, breached, notice} {
		rb.Add(ev)
	}
	recs := rb.Records()
	require.Len(t, recs, 1)
	require.Equal(t, domain.PhaseRecorded, recs[0].Phase)
	require.Equal(t, eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE, recs[0].Breach)
	require.False(t, recs[0].Failsafe)
	require.Equal(t, map[string][]Job{"A": {
		{Kind: JobStep, AlertID: "A", Round: 1, Cause: "rebuild"},
		{Kind: JobStep, AlertID: "A", Round: 1, Breach: eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE, Cause: "rebuild"},
	}}, rb.Alerts())
}
