package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/e2e/harness"
	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/devidp"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/telemetry"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func bearer(tok string) grpc.CallOption {
	return grpc.PerRPCCredentials(authn.Bearer(authn.StaticToken(tok)))
}

// People are authenticated by a real OpenID provider run as a separate
// process (Ory Hydra, platform/devidp): a command without a person's
// token, with an expired token, a token for another audience, a token of
// another issuer, or one below the assurance level acknowledging needs is
// refused and changes nothing; a forged actor in the request is ignored and
// the event records the token's issuer, subject and assurance level.
func TestSecurityPeopleAreAuthenticatedByTheProvider(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-AUTHN-1", "ACC-AUTHN-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 60*time.Second)
	waitStepDue(t, sys, id, 0)
	ctx := context.Background()
	ack := func(reqID string, opts ...grpc.CallOption) error {
		_, err := sys.Ack.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: reqID}, opts...)
		return err
	}
	sys.IDP.Add("e2e-referrer", "RZZ:clinician")

	// No token: a certificate names a service, which cannot make a
	// person's command. (The harness's own certificate is bound to every
	// role in development, the interim tools' binding of
	// docs/authorization.md, so the call is made with one no binding names.)
	if _, err := unboundAck(t, sys).Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "no-token"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("no token: got %v, want PermissionDenied", err)
	}

	// Expired: a client whose tokens live 2 s.
	short := devidp.Client{ID: "e2e-short", RedirectURIs: []string{harness.TestRedirect}, Audience: []string{harness.Audience}, AccessTokenTTL: 2 * time.Second}
	if err := sys.IDP.RegisterClient(ctx, short); err != nil {
		t.Fatal(err)
	}
	tok, err := sys.IDP.Provider.Token(ctx, short.ID, harness.TestRedirect, "e2e-referrer", "AAL3_ANY", harness.Audience)
	if err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(tok.Expiry.Add(time.Second)) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := ack("expired", bearer(tok.AccessToken)); status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "expired") {
		t.Errorf("expired token: got %v, want Unauthenticated naming the expiry", err)
	}

	// Another audience.
	if err := ack("audience", bearer(sys.IDP.Token(t, "e2e-referrer", "AAL3_ANY", harness.OtherAudience))); status.Code(err) != codes.Unauthenticated {
		t.Errorf("token for another audience: got %v, want Unauthenticated", err)
	}

	// Another issuer (claiming the same subject and audience).
	other, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Shutdown() })
	foreign, err := other.Keypair.SignJWT(jwt.MapClaims{"iss": other.Issuer(), "sub": "e2e-referrer", "aud": harness.Audience,
		"exp": time.Now().Add(10 * time.Minute).Unix(), "acr": "AAL3_ANY", "herald_person": "e2e-referrer"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ack("issuer", bearer(foreign)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("token of another issuer: got %v, want Unauthenticated", err)
	}

	// Too low an assurance level to acknowledge; enough to read.
	low := bearer(sys.IDP.Token(t, "e2e-referrer", "AAL1_USERPASS", harness.Audience))
	if err := ack("acr", low); status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "assurance level") {
		t.Errorf("AAL1 token: got %v, want PermissionDenied naming the assurance level", err)
	}
	if _, err := sys.Ack.GetAlert(ctx, &ackv1.GetAlertRequest{AlertId: id}, low); err != nil {
		t.Errorf("AAL1 read refused: %v", err)
	}
	if st := getAlert(t, sys, id).GetState().GetState(); st == ackv1.State_STATE_ACKNOWLEDGED {
		t.Fatal("a refused call acknowledged the alert")
	}

	// A forged actor (the former actor field, now reserved) is ignored.
	forged, err := proto.Marshal(&eventsv1.Actor{PersonId: "e2e-registrar", Role: "failsafe-officer", IdentityProvider: "cis2"})
	if err != nil {
		t.Fatal(err)
	}
	req := &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "forged"}
	req.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), forged))
	if _, err := sys.Ack.Acknowledge(ctx, req, sys.As(t, "e2e-referrer")); err != nil {
		t.Fatal(err)
	}
	var by *eventsv1.Actor
	for _, ev := range sys.Events(t, id) {
		if a := ev.GetAlertAcknowledged(); a != nil {
			by = a.GetActor()
		}
	}
	switch {
	case by == nil:
		t.Fatal("no AlertAcknowledged on the log")
	case by.GetPersonId() != "e2e-referrer" || by.GetSubject() != "e2e-referrer":
		t.Errorf("acknowledged by %q (subject %q), want the token's e2e-referrer", by.GetPersonId(), by.GetSubject())
	case by.GetIssuer() != sys.IDP.Issuer || by.GetAcr() != "AAL3_ANY" || by.GetRelayedBy() == "" || by.GetTokenId() == "":
		t.Errorf("actor record %v: want the provider's issuer, AAL3_ANY, the relaying certificate and the token id", by)
	}
}

// unboundAck is a client of acknowledgement with a certificate of the
// system's CA that no role binding names.
func unboundAck(t *testing.T, sys *harness.System) ackv1.AcknowledgementServiceClient {
	t.Helper()
	caFile := filepath.Join(sys.TLS.Dir, devca.CAFileName)
	ca, err := devca.Load(caFile, filepath.Join(sys.TLS.Dir, devca.CAKeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	f, err := ca.WriteLeaf(t.TempDir(), devca.Leaf{Name: "e2e-unbound"})
	if err != nil {
		t.Fatal(err)
	}
	f.CAFile = caFile
	src, err := mtls.Load(f, mtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpcserver.Dial(context.Background(), sys.Addrs.AckGRPC, telemetry.Nop("e2e"), grpcserver.ClientTLS(src, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return ackv1.NewAcknowledgementServiceClient(conn)
}
