package notification_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func breachedEvent(alertID, eventID string, clock eventsv1.ClockKind) *eventsv1.Event {
	return &eventsv1.Event{EventId: eventID, AlertId: alertID, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_SlaBreached{SlaBreached: &eventsv1.SLABreached{Clock: clock, Deadline: timestamppb.Now()}}}
}

// A breach tells the people the policy names for that clock: SLABreached of
// the acknowledge clock sends the safety lead an email (SMTP) saying which
// deadline passed, and BreachNoticeSent is on the alert's timeline. The
// notice is sent once per alert, clock and person: a redelivered
// SLABreached, or a second one for the same clock, sends nothing more; a
// clock the policy names nobody for sends nothing; a notice never fails or
// moves the escalation step. (Before: SLABreached was only recorded.)
func TestABreachTellsThePeopleThePolicyNames(t *testing.T) {
	e := newEnv(t, nil)
	id := alertID("breach")
	e.rules.set("s0", person("p-s0", cp(chEmail, "s0-breach@nhs.test")))
	e.rules.set("safety-lead", person("p-safety", cp(chEmail, "safety.lead@nhs.test")))
	_, _ = e.start()

	routed := routedEvent(id, eventsv1.Category_CATEGORY_URGENT, step(0, []eventsv1.Channel{chEmail}, role("s0")))
	routed.GetAlertRouted().GetPolicy().BreachNotices = []*eventsv1.BreachNotice{{Clock: eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE,
		Targets: []*eventsv1.Target{role("safety-lead")}, Channels: []eventsv1.Channel{chEmail}}}
	e.append(raisedEvent(id), routed)
	e.waitEvents(id, "NotificationSent", 1)

	first := breachedEvent(id, eventlog.ID(id, "breached", "ack"), eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE)
	e.append(first, first) // and redelivered
	notices := e.waitEvents(id, "BreachNoticeSent", 1)
	n := notices[0].GetBreachNoticeSent()
	require.Equal(t, eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE, n.GetClock())
	require.Equal(t, "p-safety", n.GetRecipient().GetPersonId())
	require.Equal(t, chEmail, n.GetChannel())

	// A second breach event of the same clock, and one of a clock the
	// policy names nobody for: nothing more.
	e.append(breachedEvent(id, eventlog.ID(id, "breached", "ack", "again"), eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE),
		breachedEvent(id, eventlog.ID(id, "breached", "action"), eventsv1.ClockKind_CLOCK_KIND_ACTION))
	e.waitIdle()
	mails := e.smtp.to("safety.lead@nhs.test")
	require.Len(t, mails, 1, "one notice per alert, clock and person")
	require.Contains(t, mails[0].Data, "Breached: acknowledge deadline")
	require.Contains(t, mails[0].Data, "https://herald.test/ack/")
	requireNoSecrets(t, mails[0].Data)
	require.Len(t, e.events(id, "BreachNoticeSent"), 1)
	require.Len(t, e.events(id, "NotificationSent"), 1, "the notice is not a message of the step")
	for _, f := range e.events(id, "NotificationFailed") {
		require.False(t, f.GetNotificationFailed().GetStepFailed())
	}
	requireNoSecrets(t, e.logs.String(), "safety.lead@nhs.test")
}

// The fail-safe queue reminds its officers on the policy's cadence until the
// alert is closed, not one message and then silence: the fail-safe message
// (reminder 0), then reminders 1, 2, ... each a message of its own
// (distinct notification id per reminder number, so a redelivery never
// sends one twice), saying it is a reminder; the close ends them. An
// acknowledgement does not: only the officer's close takes the alert out of
// the queue.
func TestTheFailsafeQueueRemindsItsOfficersUntilTheAlertIsClosed(t *testing.T) {
	e := newEnv(t, nil)
	id := alertID("reminders")
	e.rules.set("s0", person("p-s0", cp(chEmail, "s0-rem@nhs.test")))
	e.rules.set("rzz-fs", person("p-fso", cp(chEmail, "fso-rem@nhs.test")))
	_, _ = e.start()

	routed := routedEvent(id, eventsv1.Category_CATEGORY_URGENT, step(0, []eventsv1.Channel{chEmail}, role("s0")))
	routed.GetAlertRouted().GetPolicy().FailsafeReminderEvery = durationpb.New(500 * time.Millisecond)
	e.append(raisedEvent(id), routed)
	e.waitEvents(id, "NotificationSent", 1)
	queued := &eventsv1.Event{EventId: eventlog.ID(id, "failsafe"), AlertId: id, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_FailsafeQueued{FailsafeQueued: &eventsv1.FailsafeQueued{Queue: "rzz-fs", LastStep: 0}}}
	e.append(queued, queued)

	// The fail-safe message and two reminders, each once.
	sent := e.waitEvents(id, "NotificationSent", 4)
	e.append(&eventsv1.Event{EventId: eventlog.ID(id, "acked"), AlertId: id, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{Actor: &eventsv1.Actor{PersonId: "p-s0"}, Step: 0}}})
	e.waitEvents(id, "NotificationSent", len(sent)+1)
	e.append(&eventsv1.Event{EventId: eventlog.ID(id, "closed"), AlertId: id, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertClosed{AlertClosed: &eventsv1.AlertClosed{Actor: &eventsv1.Actor{PersonId: "p-fso"}, Reason: "done"}}})
	// Idle: the reminder scheduled last found the alert closed, and no job
	// is left, so no reminder can follow.
	e.waitIdle()

	repeats := map[uint32]string{}
	for _, ev := range e.events(id, "NotificationSent") {
		s := ev.GetNotificationSent()
		if s.GetRecipient().GetPersonId() != "p-fso" {
			continue
		}
		_, dup := repeats[s.GetRepeat()]
		require.False(t, dup, "reminder %d sent once", s.GetRepeat())
		repeats[s.GetRepeat()] = s.GetNotificationId()
		require.Equal(t, uint32(1), s.GetStep(), "the fail-safe step is len(steps)")
	}
	require.GreaterOrEqual(t, len(repeats), 4, "the fail-safe message and reminders on after the acknowledgement")
	for k := range uint32(len(repeats)) {
		require.Contains(t, repeats, k, "reminders are numbered 0, 1, 2, ... without a gap")
	}
	mails := e.smtp.to("fso-rem@nhs.test")
	require.Len(t, mails, len(repeats), "one email per reminder")
	reminders := 0
	for _, m := range mails {
		if strings.Contains(m.Data, "Reminder ") {
			reminders++
		}
	}
	require.Equal(t, len(repeats)-1, reminders, "every message after the first says it is a reminder")
}
