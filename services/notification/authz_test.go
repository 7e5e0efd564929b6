package notification_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/authz"
	"github.com/herald-health/herald/platform/authz/authztest"
	"github.com/herald-health/herald/platform/authz/devbindings"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	notificationv1 "github.com/herald-health/herald/proto/gen/herald/notification/v1"
)

// TestNotificationsOnlyForTheAlertsTrust: with the development role
// bindings, an alert of trust A (RZZ) lists its notifications to trust A's
// fail-safe officer and to nobody of trust B (an empty list, not an
// error); a clinician may not list them; a resend is refused to trust B's
// operator; a call with no caller is Unauthenticated.
func TestNotificationsOnlyForTheAlertsTrust(t *testing.T) {
	e := newEnv(t, nil)
	file, err := devbindings.Write(t.TempDir(), false)
	require.NoError(t, err)
	e.cfg.RoleBindingsFile = file
	src, err := authz.Load(file, authz.Options{})
	require.NoError(t, err)
	e.authn = authztest.Authentication(src)
	id := alertID("authz")
	e.rules.set("referrer:G"+id[:6], person("p-ref", cp(chEmail, "referrer@nhs.test")))
	svc, _ := e.start()
	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, []eventsv1.Channel{chEmail}, referrer())))
	sent := e.waitEvents(id, "NotificationSent", 1)

	c := e.client(svc)
	ctx := context.Background()
	as := func(sub string) context.Context { return authztest.As(ctx, sub) }
	list := func(sub string) ([]*notificationv1.Notification, error) {
		r, err := c.ListNotifications(as(sub), &notificationv1.ListNotificationsRequest{AlertId: id})
		return r.GetNotifications(), err
	}
	got, err := list("failsafe-a")
	require.NoError(t, err)
	require.Len(t, got, 1, "trust A's fail-safe officer lists the alert's notifications")
	got, err = list("failsafe-b")
	require.NoError(t, err)
	require.Empty(t, got, "trust B's fail-safe officer lists trust A's notifications")
	got, err = list("safety-lead")
	require.NoError(t, err)
	require.Len(t, got, 1, "the network-wide safety lead lists them")
	_, err = list("clinician-a")
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a clinician lists notifications: %v", err)
	_, err = c.ListNotifications(ctx, &notificationv1.ListNotificationsRequest{AlertId: id})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "no caller: %v", err)

	nid := sent[0].GetNotificationSent().GetNotificationId()
	_, err = c.ResendNotification(as("operator-b"), &notificationv1.ResendNotificationRequest{NotificationId: nid, OperatorId: "rzy-operator", Reason: "test"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "trust B's operator resends trust A's notification: %v", err)
}
