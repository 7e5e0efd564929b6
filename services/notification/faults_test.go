package notification_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/channel"
)

// groupMembers returns, per member of the consumer group, how many
// partitions it holds.
func (e *env) groupMembers() []int {
	e.t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(e.cfg.Log.Brokers...), Transport: &kafka.Transport{}}
	res, err := c.DescribeGroups(context.Background(), &kafka.DescribeGroupsRequest{GroupIDs: []string{e.cfg.GroupID}})
	if err != nil || len(res.Groups) != 1 {
		return nil
	}
	var out []int
	for _, m := range res.Groups[0].Members {
		n := 0
		for _, t := range m.MemberAssignments.Topics {
			n += len(t.Partitions)
		}
		out = append(out, n)
	}
	return out
}

// Two replicas run at once (one consumer group, one Redis), and the second
// joins while the first is working: every alert's every step reaches each
// of its recipients exactly once, whichever replica took the event or the
// job.
func TestTwoReplicasSendEachMessageOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.RateLimitMax = 0 // twelve alerts to one person: the default limit (ten in ten minutes) would hold two back
	// A provider call that times out after the provider took the message is
	// retried with the same Message-ID (the at-least-once window the
	// provider's dedup closes); the harness's 2 s bound is reached on a
	// loaded machine, and that window is not what this test is about.
	e.cfg.SendTimeout = 15 * time.Second
	hook := e.sink.srv.URL + "/hooks/two"
	e.rules.set("two-s0", person("p-a", cp(chEmail, "two-a@nhs.test")), person("p-b", cp(chWebhook, hook)))
	e.rules.set("two-s1", person("p-c", cp(chEmail, "two-c@nhs.test")))
	const n = 12
	var ids []string
	for i := range n {
		ids = append(ids, alertID(fmt.Sprintf("two-%d", i)))
	}
	routed := func(id string, cat eventsv1.Category) *eventsv1.Event {
		return routedEvent(id, cat, step(0, nil, role("two-s0")), step(1, nil, role("two-s1")))
	}
	escalated := func(id string) *eventsv1.Event {
		return &eventsv1.Event{EventId: eventlog.ID(id, "escalated", "1", "0"), AlertId: id, Tenant: "RZZ",
			Payload: &eventsv1.Event_AlertEscalated{AlertEscalated: &eventsv1.AlertEscalated{FromStep: 0, ToStep: 1, Reason: eventsv1.EscalationReason_ESCALATION_REASON_TIMEOUT}}}
	}
	e.start()
	for i, id := range ids[:n/2] {
		e.append(routed(id, []eventsv1.Category{eventsv1.Category_CATEGORY_CRITICAL, eventsv1.Category_CATEGORY_URGENT}[i%2]))
	}
	e.start() // joins while the first replica works
	for i, id := range ids[n/2:] {
		e.append(routed(id, []eventsv1.Category{eventsv1.Category_CATEGORY_CRITICAL, eventsv1.Category_CATEGORY_URGENT}[i%2]))
	}
	require.Eventually(t, func() bool {
		m := e.groupMembers()
		return len(m) == 2 && m[0] > 0 && m[1] > 0
	}, 30*time.Second, 50*time.Millisecond, "both replicas hold partitions")
	for _, id := range ids {
		e.waitEvents(id, "NotificationSent", 2)
		e.append(escalated(id))
	}
	for _, id := range ids {
		e.waitEvents(id, "NotificationSent", 3)
	}
	e.waitIdle()

	mails := append(e.smtp.to("two-a@nhs.test"), e.smtp.to("two-c@nhs.test")...)
	hooks := e.sink.on("/hooks/two")
	for _, id := range ids {
		sent := e.events(id, "NotificationSent")
		got := map[string]bool{}
		for _, ev := range sent {
			s := ev.GetNotificationSent()
			got[fmt.Sprintf("%d/%s", s.GetStep(), s.GetRecipient().GetPersonId())] = true
			// Exactly one message for each notification id at the provider.
			delivered := 0
			for _, m := range mails {
				if strings.Contains(m.Data, "Message-ID: <"+s.GetNotificationId()+"@") {
					delivered++
				}
			}
			for _, h := range hooks {
				if h.Header.Get(channel.HeaderIdempotencyKey) == s.GetNotificationId() {
					delivered++
				}
			}
			attempts := 0
			for _, a := range e.events(id, "NotificationAttempted") {
				if a.GetNotificationAttempted().GetNotificationId() == s.GetNotificationId() {
					attempts++
				}
			}
			require.Equal(t, 1, delivered, "alert %s step %d to %s: messages at the provider (%d attempts in the log)", id, s.GetStep(), s.GetRecipient().GetPersonId(), attempts)
		}
		require.Equal(t, map[string]bool{"0/p-a": true, "0/p-b": true, "1/p-c": true}, got, "alert %s: who was told at which step", id)
	}
	require.Len(t, mails, 2*n, "one mail per alert to p-a (step 0) and to p-c (step 1)")
	require.Len(t, hooks, n, "one webhook per alert to p-b (step 0)")
}

// The rules service is down when the step's targets must be resolved: the
// step is neither dropped nor failed (nobody was found only because nobody
// could be asked); it is tried again until the rules service is back, and
// then the recipient is told once.
func TestRulesDownWhenResolvingTargetsDelaysTheStepAndLosesNothing(t *testing.T) {
	e := newEnv(t, nil)
	id := alertID("rules-down")
	e.rules.set("rules-down", person("p-rd", cp(chEmail, "rules-down@nhs.test")))
	e.start()
	e.rules.stop()
	e.append(routedEvent(id, eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("rules-down"))))
	// The step job fails against the missing rules service and is tried
	// again (the engine logs each failure).
	require.Eventually(t, func() bool {
		tries := 0
		for _, line := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(line, `"msg":"notification job"`) && strings.Contains(line, id) && strings.Contains(line, "resolve targets") {
				tries++
			}
		}
		return tries >= 3
	}, 30*time.Second, 20*time.Millisecond, "the step job tried again while the rules service is down")
	require.Empty(t, e.events(id, "NotificationSent"))
	require.Empty(t, e.events(id, "NotificationFailed"), "an outage of the rules service is not a step that reaches nobody")
	require.Zero(t, e.rules.callCount())

	e.rules.restart(t)
	sent := e.waitEvents(id, "NotificationSent", 1)
	require.Equal(t, "p-rd", sent[0].GetNotificationSent().GetRecipient().GetPersonId())
	e.waitIdle()
	require.Len(t, e.smtp.to("rules-down@nhs.test"), 1)
	require.Len(t, e.events(id, "NotificationSent"), 1)
	require.Empty(t, e.events(id, "NotificationFailed"))
}
