package acknowledgement_test

import (
	"context"
	"testing"
	"time"

	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// forgedActor is what an old client (or an attacker) puts in a request's
// former actor field (2, now reserved): a consultant's id and a fail-safe
// officer's role.
func forgedActor(t *testing.T) []byte {
	t.Helper()
	b, err := proto.Marshal(&eventsv1.Actor{PersonId: "rzz-consultant-victim", Role: "failsafe-officer", IdentityProvider: "cis2"})
	require.NoError(t, err)
	return protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), b)
}

// The actor of a command is the person of the access token: a forged actor
// in the request is ignored, and the event records the token's issuer,
// subject and assurance level. Closing needs a fail-safe officer of the
// alert's own trust.
func TestActorComesFromTheToken(t *testing.T) {
	e := newEnv(t)
	r := e.start("r1", app.Hooks{})
	ctx := context.Background()
	id := newAlertID("actor")
	e.append(ctx, raisedEvent(id), routedEvent(id, nil, time.Hour))
	e.waitState(r.client, id, ackv1.State_STATE_ROUTED, 30*time.Second)

	req := &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-forged"}
	req.ProtoReflect().SetUnknown(forgedActor(t))
	resp, err := r.client.Acknowledge(ctx, req, e.as("rzz-dr-real"))
	require.NoError(t, err)
	require.Equal(t, "rzz-dr-real", resp.GetState().GetAcknowledgedBy().GetPersonId())

	var acked *eventsv1.Actor
	for _, ev := range e.events(id) {
		if a := ev.GetAlertAcknowledged(); a != nil {
			acked = a.GetActor()
		}
	}
	require.NotNil(t, acked, "no AlertAcknowledged event")
	require.Equal(t, "rzz-dr-real", acked.GetPersonId(), "the forged actor was recorded")
	require.Equal(t, e.idp.URL, acked.GetIssuer())
	require.Equal(t, "rzz-dr-real", acked.GetSubject())
	require.Equal(t, "AAL3_ANY", acked.GetAcr())
	require.Equal(t, "clinician", acked.GetRole())
	require.Equal(t, "oidc", acked.GetIdentityProvider())
	require.Equal(t, "jti-rzz-dr-real", acked.GetTokenId())
	require.Empty(t, acked.GetRelayedBy(), "no service relayed this call (no client certificate)")

	// A forged fail-safe officer role does not close; nor does a fail-safe
	// officer of another trust; one of the alert's trust does.
	cl := &ackv1.CloseRequest{AlertId: id, RequestId: "close-forged", Reason: "forged"}
	cl.ProtoReflect().SetUnknown(forgedActor(t))
	_, err = r.client.Close(ctx, cl, e.as("rzz-dr-real"))
	require.Equal(t, codes.PermissionDenied, status.Code(err), "got %v", err)
	_, err = r.client.Close(ctx, &ackv1.CloseRequest{AlertId: id, RequestId: "close-other-trust", Reason: "not mine"}, e.as("rzy-fso", "RZY:failsafe-officer"))
	require.Equal(t, codes.PermissionDenied, status.Code(err), "got %v", err)
	closed, err := r.client.Close(ctx, &ackv1.CloseRequest{AlertId: id, RequestId: "close-own", Reason: "audited"}, e.as("rzz-fso", "RZZ:failsafe-officer"))
	require.NoError(t, err)
	require.Equal(t, ackv1.State_STATE_CLOSED, closed.GetState().GetState())
}

// A token of the right issuer but the wrong audience, an expired one, or
// one below the assurance level acknowledging needs is refused before the
// command runs.
func TestCommandsRefuseBadTokens(t *testing.T) {
	e := newEnv(t)
	r := e.start("r1", app.Hooks{})
	ctx := context.Background()
	id := newAlertID("badtok")
	e.append(ctx, raisedEvent(id), routedEvent(id, nil, time.Hour))
	e.waitState(r.client, id, ackv1.State_STATE_ROUTED, 30*time.Second)
	cases := map[string]struct {
		change func(*authntestClaims)
		code   codes.Code
	}{
		"wrong audience": {func(c *authntestClaims) { c.Audience = []string{"not-herald"} }, codes.Unauthenticated},
		"expired":        {func(c *authntestClaims) { c.Expiry = numericDate(time.Now().Add(-time.Minute)) }, codes.Unauthenticated},
		"AAL1":           {func(c *authntestClaims) { c.ACR = "AAL1_USERPASS" }, codes.PermissionDenied},
	}
	for name, c := range cases {
		_, err := r.client.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-" + name}, e.asWith("rzz-dr-x", c.change))
		require.Equal(t, c.code, status.Code(err), "%s: %v", name, err)
	}
	got, err := r.client.GetAlert(ctx, &ackv1.GetAlertRequest{AlertId: id})
	require.NoError(t, err)
	require.Equal(t, ackv1.State_STATE_ROUTED, got.GetState().GetState(), "a refused command changed the alert")
}
