package lifecycle_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
)

// A message notification did not send (NotificationSuperseded) is on the
// alert's timeline with who was not told and why, and changes nothing else.
func TestSupersededMessageIsOnTheTimeline(t *testing.T) {
	st := fold(raised(), routed())
	sup := &eventsv1.Event{EventId: "sup", AlertId: alertID, Tenant: "RZZ", OccurredAt: at(0), Payload: &eventsv1.Event_NotificationSuperseded{
		NotificationSuperseded: &eventsv1.NotificationSuperseded{Step: 0, Recipient: &eventsv1.Recipient{PersonId: "dr-a"},
			Reason: "step superseded", ReasonCode: eventsv1.SupersededReason_SUPERSEDED_REASON_OVERTAKEN}}}
	next, applied := lifecycle.Apply(st, sup, lifecycle.Position{Offset: -1})
	require.True(t, applied)
	last := next.GetTimeline()[len(next.GetTimeline())-1]
	require.Equal(t, "not sent at step 0 repeat 0: step superseded", last.GetSummary())
	require.Equal(t, "dr-a", last.GetPersonId())
	require.False(t, last.GetNoEffect())
	require.Equal(t, st.GetState(), next.GetState())
}
