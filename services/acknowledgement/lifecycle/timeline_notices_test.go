package lifecycle_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// A message held back by a rate limit, merged into a digest, and a breach
// notice are on the alert's timeline by name, with who and why, and change
// nothing else: the page never shows a "routed" alert with no explanation.
func TestDeferredDigestAndBreachNoticeAreOnTheTimeline(t *testing.T) {
	who := &eventsv1.Recipient{PersonId: "p1"}
	deferred := &eventsv1.Event{EventId: "deferred", AlertId: alertID, Tenant: "RZZ", OccurredAt: at(2),
		Payload: &eventsv1.Event_NotificationDeferred{NotificationDeferred: &eventsv1.NotificationDeferred{
			Recipient: who, Channel: eventsv1.Channel_CHANNEL_EMAIL, Reason: "rate limit: 10 messages", DigestAt: at(3)}}}
	digest := &eventsv1.Event{EventId: "digest", AlertId: alertID, Tenant: "RZZ", OccurredAt: at(3),
		Payload: &eventsv1.Event_DigestSent{DigestSent: &eventsv1.DigestSent{Recipient: who, Channel: eventsv1.Channel_CHANNEL_EMAIL, References: 4}}}
	notice := &eventsv1.Event{EventId: "notice", AlertId: alertID, Tenant: "RZZ", OccurredAt: at(4),
		Payload: &eventsv1.Event_BreachNoticeSent{BreachNoticeSent: &eventsv1.BreachNoticeSent{Recipient: &eventsv1.Recipient{PersonId: "lead"},
			Clock: clockAck, Channel: eventsv1.Channel_CHANNEL_SMS}}}
	before := fold(raised(), routed())
	st := fold(raised(), routed(), deferred, digest, notice)
	tl := st.GetTimeline()
	require.Len(t, tl, 5)
	want := []struct{ typ, person, summary string }{
		{"NotificationDeferred", "p1", "rate limit: 10 messages; digest due"},
		{"DigestSent", "p1", "in a digest of 4 alerts"},
		{"BreachNoticeSent", "lead", "CLOCK_KIND_ACKNOWLEDGE breach"},
	}
	for i, w := range want {
		e := tl[2+i]
		require.Equal(t, w.typ, e.GetType())
		require.Equal(t, w.person, e.GetPersonId())
		require.Contains(t, e.GetSummary(), w.summary)
		require.False(t, e.GetNoEffect())
	}
	require.Equal(t, before.GetState(), st.GetState())
	require.Equal(t, before.GetStep(), st.GetStep())
	require.True(t, proto.Equal(before.GetClocks(), st.GetClocks()))
}

// A notification's timeline entry carries its step and repeat as fields
// (issue #21: the console counts fail-safe reminders from them, not by
// parsing the summary); other entries are not notifications.
func TestNotificationEntriesCarryTheirStepAndRepeat(t *testing.T) {
	st := fold(raised(), routed(), sent("s0", 0, 0, "p1"), sent("s1", 1, 2, "p2"))
	tl := st.GetTimeline()
	require.Len(t, tl, 4)
	for _, e := range tl[:2] {
		require.False(t, e.GetNotification(), e.GetType())
	}
	require.True(t, tl[2].GetNotification())
	require.Equal(t, []uint32{0, 0}, []uint32{tl[2].GetStep(), tl[2].GetRepeat()})
	require.True(t, tl[3].GetNotification())
	require.Equal(t, []uint32{1, 2}, []uint32{tl[3].GetStep(), tl[3].GetRepeat()})
}
