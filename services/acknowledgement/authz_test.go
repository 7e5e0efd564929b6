package acknowledgement_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/authz"
	"github.com/herald-health/herald/platform/authz/authztest"
	"github.com/herald-health/herald/platform/authz/devbindings"
	"github.com/herald-health/herald/platform/eventlog"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
)

// authzEnv is an environment whose replicas enforce the development role
// bindings (people only, as in production), with the test stand-in for
// authentication: authztest.As(ctx, subject) calls as that person
// (docs/authorization.md lists the subjects).
func authzEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	file, err := devbindings.Write(t.TempDir(), false)
	require.NoError(t, err)
	e.cfg.RoleBindingsFile = file
	src, err := authz.Load(file, authz.Options{})
	require.NoError(t, err)
	e.authn = authztest.Authentication(src)
	return e
}

// inTrust returns ev for another trust.
func inTrust(ev *eventsv1.Event, tenant string) *eventsv1.Event {
	ev = proto.Clone(ev).(*eventsv1.Event)
	ev.Tenant = tenant
	return ev
}

func sentTo(alertID, tenant, person string) *eventsv1.Event {
	return &eventsv1.Event{EventId: eventlog.ID(alertID, "sent", person), AlertId: alertID, Tenant: tenant, OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_NotificationSent{NotificationSent: &eventsv1.NotificationSent{
			NotificationId: eventlog.ID(alertID, "n", person), Recipient: &eventsv1.Recipient{PersonId: person, Tenant: tenant},
			Channel: eventsv1.Channel_CHANNEL_EMAIL, Attempt: 1}}}
}

// TestAuthorizationOfAlertCommandsAndReads proves, through the gRPC API
// with the interceptors and the handlers' checks: a person of trust B can
// neither read nor acknowledge trust A's alert; a clinician of trust A who
// is not a recipient cannot acknowledge; a recipient can; a fail-safe
// officer of the trust acts for the recipients; a self-declared fail-safe
// officer (the role in the request, not bound) cannot close; a call with
// no caller is Unauthenticated.
func TestAuthorizationOfAlertCommandsAndReads(t *testing.T) {
	e := authzEnv(t)
	r := e.start("r1", app.Hooks{})
	ctx := context.Background()
	as := func(sub string) context.Context { return authztest.As(ctx, sub) }

	a := newAlertID("authz-a") // trust A (RZZ), sent to clinician-a (rzz-dr-ashworth)
	e.append(ctx, raisedEvent(a), routedEvent(a, nil, time.Hour), sentTo(a, "RZZ", "rzz-dr-ashworth"))
	require.Eventually(t, func() bool {
		g, err := r.client.GetAlert(as("failsafe-a"), &ackv1.GetAlertRequest{AlertId: a})
		return err == nil && g.GetState().GetState() == ackv1.State_STATE_NOTIFIED
	}, 30*time.Second, 50*time.Millisecond)

	_, err := r.client.GetAlert(ctx, &ackv1.GetAlertRequest{AlertId: a})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "no caller: %v", err)

	// Trust B reads and acts on nothing of trust A.
	_, err = r.client.GetAlert(as("clinician-b"), &ackv1.GetAlertRequest{AlertId: a})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "trust B reads trust A's alert: %v", err)
	_, err = r.client.Acknowledge(as("clinician-b"), &ackv1.AcknowledgeRequest{AlertId: a, RequestId: "b-ack"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "trust B acknowledges trust A's alert: %v", err)
	_, err = r.client.Acknowledge(as("failsafe-b"), &ackv1.AcknowledgeRequest{AlertId: a, RequestId: "fb-ack"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "trust B's fail-safe officer acknowledges trust A's alert: %v", err)

	// A clinician of trust A the alert was not sent to.
	_, err = r.client.Acknowledge(as("clinician-a2"), &ackv1.AcknowledgeRequest{AlertId: a, RequestId: "a2-ack"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a non-recipient acknowledges: %v", err)
	_, err = r.client.Decline(as("clinician-a2"), &ackv1.DeclineRequest{AlertId: a, RequestId: "a2-dec", Reason: eventsv1.DeclineReason_DECLINE_REASON_NOT_MY_PATIENT})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a non-recipient declines: %v", err)

	// None of the refused commands reached the log.
	for _, ev := range e.events(a) {
		require.Nil(t, ev.GetAlertAcknowledged(), "a refused acknowledgement is on the log")
		require.Nil(t, ev.GetAlertDeclined(), "a refused decline is on the log")
	}

	// The recipient acknowledges.
	ack, err := r.client.Acknowledge(as("clinician-a"), &ackv1.AcknowledgeRequest{AlertId: a, RequestId: "a-ack"})
	require.NoError(t, err)
	require.Equal(t, ackv1.State_STATE_ACKNOWLEDGED, ack.GetState().GetState())

	// Close: the recipient clinician is refused (a request declares no
	// role: the actor and their role come from the verified caller); the
	// trust's fail-safe officer closes.
	_, err = r.client.Close(as("clinician-a"), &ackv1.CloseRequest{AlertId: a, RequestId: "a-close", Reason: "done"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a clinician closes: %v", err)
	_, err = r.client.Close(as("failsafe-b"), &ackv1.CloseRequest{AlertId: a, RequestId: "fb-close", Reason: "done"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "trust B's fail-safe officer closes trust A's alert: %v", err)
	closed, err := r.client.Close(as("failsafe-a"), &ackv1.CloseRequest{AlertId: a, RequestId: "fa-close", Reason: "done"})
	require.NoError(t, err)
	require.Equal(t, ackv1.State_STATE_CLOSED, closed.GetState().GetState())

	// A fail-safe officer of the trust covers the recipients of another alert.
	b := newAlertID("authz-a-fso")
	e.append(ctx, raisedEvent(b), routedEvent(b, nil, time.Hour), sentTo(b, "RZZ", "rzz-dr-ashworth"))
	require.Eventually(t, func() bool {
		_, err := r.client.Acknowledge(as("failsafe-a"), &ackv1.AcknowledgeRequest{AlertId: b, RequestId: "fa-ack"})
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the trust's fail-safe officer could not acknowledge")
}

// TestListAlertsReturnsOnlyTheCallersTrusts: with no tenant, a list is the
// caller's trusts (never every trust); naming another trust returns
// nothing; a network-wide reader sees every trust; the watch stream
// carries only the caller's trusts.
func TestListAlertsReturnsOnlyTheCallersTrusts(t *testing.T) {
	e := authzEnv(t)
	r := e.start("r1", app.Hooks{})
	ctx := context.Background()
	as := func(sub string) context.Context { return authztest.As(ctx, sub) }

	// Watch as clinician-b before the alerts exist.
	wctx, wcancel := context.WithTimeout(as("clinician-b"), 60*time.Second)
	defer wcancel()
	watch, err := r.client.WatchAlerts(wctx, &ackv1.WatchAlertsRequest{})
	require.NoError(t, err)
	_, err = watch.Header()
	require.NoError(t, err)

	a, b := newAlertID("list-a"), newAlertID("list-b")
	e.append(ctx, raisedEvent(a), routedEvent(a, nil, time.Hour))
	e.append(ctx, inTrust(raisedEvent(b), "RZY"), inTrust(routedEvent(b, nil, time.Hour), "RZY"))
	ids := func(sub, tenant string) []string {
		resp, err := r.client.ListAlerts(as(sub), &ackv1.ListAlertsRequest{Tenant: tenant, PageSize: 100})
		require.NoError(t, err)
		var out []string
		for _, st := range resp.GetAlerts() {
			out = append(out, st.GetAlertId())
		}
		return out
	}
	require.Eventually(t, func() bool { return len(ids("safety-lead", "")) == 2 }, 30*time.Second, 50*time.Millisecond,
		"the network-wide safety lead sees both trusts' alerts")
	require.Equal(t, []string{a}, ids("clinician-a", ""), "no tenant: trust A's clinician sees trust A only")
	require.Equal(t, []string{b}, ids("clinician-b", ""), "no tenant: trust B's clinician sees trust B only")
	require.Empty(t, ids("clinician-a", "RZY"), "another trust's list is empty")
	require.Equal(t, []string{b}, ids("safety-lead", "RZY"))
	_, err = r.client.ListAlerts(as("policy-admin-a"), &ackv1.ListAlertsRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a policy admin reads no alerts: %v", err)

	// The stream: clinician-b sees b's changes and never a's.
	for {
		msg, err := watch.Recv()
		require.NoError(t, err)
		require.Equal(t, "RZY", msg.GetState().GetTenant(), "trust A's alert on trust B's stream")
		if msg.GetState().GetAlertId() == b && msg.GetState().GetState() == ackv1.State_STATE_ROUTED {
			break
		}
	}
}
