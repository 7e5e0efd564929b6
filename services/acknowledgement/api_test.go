package acknowledgement_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestCommandsOverGRPC(t *testing.T) {
	e := newEnv(t)
	r := e.start("r1", app.Hooks{})
	ctx := context.Background()
	id := newAlertID("api")
	e.append(ctx, raisedEvent(id), routedEvent(id, nil, time.Hour))
	e.waitState(r.client, id, ackv1.State_STATE_ROUTED, 30*time.Second)

	// No person's token: refused. Invalid: the field is named.
	_, err := r.client.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "r0"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "got %v", err)
	_, err = r.client.Decline(ctx, &ackv1.DeclineRequest{AlertId: id, RequestId: "r0"}, e.as("dr-a"))
	requireViolation(t, err, "reason")
	_, err = r.client.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: "no-such-alert", RequestId: "r0"}, e.as("dr-a"))
	require.Equal(t, codes.NotFound, status.Code(err), "got %v", err)

	// Read, acknowledge (twice: same outcome), act.
	_, err = r.client.MarkRead(ctx, &ackv1.MarkReadRequest{AlertId: id, RequestId: "read-1"}, e.as("dr-a"))
	require.NoError(t, err)
	a1, err := r.client.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-1"}, e.as("dr-a"))
	require.NoError(t, err)
	require.Equal(t, ackv1.State_STATE_ACKNOWLEDGED, a1.GetState().GetState())
	require.Equal(t, "dr-a", a1.GetState().GetAcknowledgedBy().GetPersonId())
	a2, err := r.client.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-1"}, e.as("dr-a"))
	require.NoError(t, err, "a repeated request returns the original outcome")
	require.Equal(t, a1.GetEventId(), a2.GetEventId())
	_, err = r.client.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-2"}, e.as("dr-b"))
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "alert is ACKNOWLEDGED")
	act, err := r.client.RecordAction(ctx, &ackv1.RecordActionRequest{AlertId: id, RequestId: "act-1", Action: "CT booked"}, e.as("dr-a"))
	require.NoError(t, err)
	require.Equal(t, ackv1.State_STATE_ACTIONED, act.GetState().GetState())

	// Close: fail-safe officer only, with a reason.
	_, err = r.client.Close(ctx, &ackv1.CloseRequest{AlertId: id, RequestId: "c1", Reason: "done"}, e.as("dr-a"))
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = r.client.Close(ctx, &ackv1.CloseRequest{AlertId: id, RequestId: "c2"}, e.as("fso", "RZZ:failsafe-officer"))
	requireViolation(t, err, "reason")
	cl, err := r.client.Close(ctx, &ackv1.CloseRequest{AlertId: id, RequestId: "c3", Reason: "actioned and audited"}, e.as("fso", "RZZ:failsafe-officer"))
	require.NoError(t, err)
	require.Equal(t, ackv1.State_STATE_CLOSED, cl.GetState().GetState())

	// Timeline: every event, in order, with no patient data.
	got, err := r.client.GetAlert(ctx, &ackv1.GetAlertRequest{AlertId: id})
	require.NoError(t, err)
	var types []string
	for _, en := range got.GetTimeline() {
		types = append(types, en.GetType())
	}
	require.Equal(t, []string{"AlertRaised", "AlertRouted", "AlertRead", "AlertAcknowledged", "ActionRecorded", "AlertClosed"}, types)
	requireNoPatientData(t, prototext.Format(got))
	requireNoPatientData(t, e.logs.String())

	// A cancelled alert cannot be acknowledged: the answer names the state.
	cid := newAlertID("api-cancelled")
	e.append(ctx, raisedEvent(cid), routedEvent(cid, nil, time.Hour), &eventsv1.Event{EventId: cid + "-x", AlertId: cid, Tenant: "RZZ",
		OccurredAt: timestamppb.Now(), Payload: &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{Reason: "report withdrawn"}}})
	e.waitState(r.client, cid, ackv1.State_STATE_CANCELLED, 30*time.Second)
	_, err = r.client.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: cid, RequestId: "x1"}, e.as("dr-a"))
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "alert is CANCELLED")
}

func requireViolation(t *testing.T, err error, field string) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), "got %v", err)
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	require.Contains(t, fields, field)
}

func TestQueriesOverGRPC(t *testing.T) {
	e := newEnv(t)
	r := e.start("r1", app.Hooks{})
	ctx := context.Background()

	watch, err := r.client.WatchAlerts(ctx, &ackv1.WatchAlertsRequest{Tenant: "RZZ"})
	require.NoError(t, err)
	seen := make(chan *ackv1.AlertState, 100)
	go func() {
		for {
			m, err := watch.Recv()
			if err == io.EOF || err != nil {
				return
			}
			seen <- m.GetState()
		}
	}()
	_, err = watch.Header() // sent once changes flow to the watcher
	require.NoError(t, err)

	var ids []string
	for i := range 5 {
		id := newAlertID("q" + string(rune('a'+i)))
		ids = append(ids, id)
		overdue := time.Hour
		if i < 2 {
			overdue = 0 // acknowledge-by already passed
		}
		e.append(ctx, raisedEvent(id), routedEvent(id, &eventsv1.Clocks{AcknowledgeBy: timestamppb.New(time.Now().Add(overdue))}, time.Hour))
	}
	for _, id := range ids {
		e.waitState(r.client, id, ackv1.State_STATE_ROUTED, 30*time.Second)
	}
	_, err = r.client.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: ids[4], RequestId: "a"}, e.as("dr-z"))
	require.NoError(t, err)

	// Pages of two, newest first, every alert once.
	var listed []string
	token := ""
	for {
		page, err := r.client.ListAlerts(ctx, &ackv1.ListAlertsRequest{Tenant: "RZZ", PageSize: 2, PageToken: token})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.GetAlerts()), 2)
		for _, a := range page.GetAlerts() {
			listed = append(listed, a.GetAlertId())
			require.Empty(t, a.GetTimeline())
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	require.ElementsMatch(t, ids, listed)

	list := func(req *ackv1.ListAlertsRequest) []string {
		t.Helper()
		page, err := r.client.ListAlerts(ctx, req)
		require.NoError(t, err)
		var out []string
		for _, a := range page.GetAlerts() {
			out = append(out, a.GetAlertId())
		}
		return out
	}
	require.Equal(t, []string{ids[4]}, list(&ackv1.ListAlertsRequest{States: []ackv1.State{ackv1.State_STATE_ACKNOWLEDGED}}))
	require.Equal(t, []string{ids[4]}, list(&ackv1.ListAlertsRequest{Assignee: "dr-z"}))
	require.ElementsMatch(t, ids[:2], list(&ackv1.ListAlertsRequest{Tenant: "RZZ", OverdueOnly: true}))
	require.Len(t, list(&ackv1.ListAlertsRequest{Category: eventsv1.Category_CATEGORY_CRITICAL}), 5)
	require.Empty(t, list(&ackv1.ListAlertsRequest{Tenant: "RXX"}))
	_, err = r.client.ListAlerts(ctx, &ackv1.ListAlertsRequest{PageToken: "garbage"})
	requireViolation(t, err, "page_token")

	// The worklist's order (issue #21): by deadline from the index, the two
	// overdue first, then the two due in an hour, the acknowledged one
	// (no acknowledge-by left to meet) last; pages of two by its cursor.
	var pages [][]string
	token = ""
	for len(pages) < 5 {
		page, err := r.client.ListAlerts(ctx, &ackv1.ListAlertsRequest{Tenant: "RZZ", PageSize: 2, PageToken: token,
			Order: ackv1.ListOrder_LIST_ORDER_DEADLINE_ASC})
		require.NoError(t, err)
		var got []string
		for _, a := range page.GetAlerts() {
			got = append(got, a.GetAlertId())
		}
		pages = append(pages, got)
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	require.Len(t, pages, 3, "pages %v", pages)
	require.ElementsMatch(t, ids[:2], pages[0])
	require.ElementsMatch(t, ids[2:4], pages[1])
	require.Equal(t, []string{ids[4]}, pages[2])
	_, err = r.client.ListAlerts(ctx, &ackv1.ListAlertsRequest{Order: ackv1.ListOrder(99)})
	requireViolation(t, err, "order")

	// The watcher saw the acknowledgement.
	deadline := time.After(10 * time.Second)
	for {
		select {
		case st := <-seen:
			if st.GetAlertId() == ids[4] && st.GetState() == ackv1.State_STATE_ACKNOWLEDGED {
				return
			}
		case <-deadline:
			t.Fatal("watcher did not see the acknowledgement")
		}
	}
}

// Only a replica with watchers subscribes to the changes channel: with
// nobody watching, no replica reads every change.
func TestOnlyAReplicaWithWatchersSubscribesToChanges(t *testing.T) {
	e := newEnv(t)
	r := e.start("r1", app.Hooks{})
	ctx := context.Background()
	channel := "{" + e.cfg.RedisNamespace + ":ack}:changes"
	subscribers := func() int64 {
		t.Helper()
		n, err := e.rdb.PubSubNumSub(ctx, channel).Result()
		require.NoError(t, err)
		return n[channel]
	}

	first := newAlertID("w1")
	e.append(ctx, raisedEvent(first), routedEvent(first, nil, time.Hour))
	e.waitState(r.client, first, ackv1.State_STATE_ROUTED, 30*time.Second)
	require.Zero(t, subscribers(), "subscribed with no watcher")

	for round := range 2 {
		wctx, stop := context.WithCancel(ctx)
		watch, err := r.client.WatchAlerts(wctx, &ackv1.WatchAlertsRequest{Tenant: "RZZ"})
		require.NoError(t, err)
		_, err = watch.Header()
		require.NoError(t, err)
		require.EqualValues(t, 1, subscribers(), "round %d: subscribed once the headers came", round)

		id := newAlertID(fmt.Sprintf("w%d", round+2))
		e.append(ctx, raisedEvent(id))
		for {
			m, err := watch.Recv()
			require.NoError(t, err, "round %d", round)
			if m.GetState().GetAlertId() == id {
				break
			}
		}
		stop()
		require.Eventually(t, func() bool { return subscribers() == 0 }, 10*time.Second, 20*time.Millisecond,
			"round %d: still subscribed after the last watcher left", round)
	}
}

// TestWatchAlertsIsCappedPerCaller: one caller may hold at most
// watch-streams-per-caller streams; one more is ResourceExhausted with a
// message saying what to do, and closing a stream frees its place.
func TestWatchAlertsIsCappedPerCaller(t *testing.T) {
	e := newEnv(t)
	e.cfg.WatchesPerCaller = 2
	r := e.start("r1", app.Hooks{})
	ctx := context.Background()
	watch := func() (ackv1.AcknowledgementService_WatchAlertsClient, context.CancelFunc) {
		wctx, stop := context.WithCancel(ctx)
		w, err := r.client.WatchAlerts(wctx, &ackv1.WatchAlertsRequest{Tenant: "RZZ"})
		require.NoError(t, err)
		return w, stop
	}
	// live reports whether w delivers a change: the next alert appended
	// reaches it, or the stream was refused.
	live := func(w ackv1.AcknowledgementService_WatchAlertsClient) error {
		id := newAlertID("cap")
		e.append(ctx, raisedEvent(id))
		for {
			m, err := w.Recv()
			if err != nil {
				return err
			}
			if m.GetState().GetAlertId() == id {
				return nil
			}
		}
	}
	first, stopFirst := watch()
	require.NoError(t, live(first))
	second, stopSecond := watch()
	defer stopSecond()
	require.NoError(t, live(second))

	// A generous bound: without the cap the stream would wait for changes.
	tctx, stopThird := context.WithTimeout(ctx, 30*time.Second)
	third, err := r.client.WatchAlerts(tctx, &ackv1.WatchAlertsRequest{Tenant: "RZZ"})
	require.NoError(t, err)
	_, err = third.Recv()
	stopThird()
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "at most 2 at once")

	stopFirst()
	require.Eventually(t, func() bool {
		w, stop := watch()
		defer stop()
		return live(w) == nil
	}, 30*time.Second, 100*time.Millisecond, "a closed stream frees its place")
}
