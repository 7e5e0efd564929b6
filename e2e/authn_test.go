package e2e

import (
	"context"
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
	"github.com/herald-health/herald/platform/devidp"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
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
	sys.IDP.Add(harness.Referrer.ID, harness.Referrer.Roles...)

	// No token: a certificate names a service, which cannot make a
	// person's command (the harness's own is a sending system and an
	// operator: TestSecurityTheHarnessCertificateAloneCannotAct).
	if err := ack("no-token"); status.Code(err) != codes.PermissionDenied {
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
	if _, err := sys.Ack.Acknowledge(ctx, req, sys.As(t, harness.Referrer)); err != nil {
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

// The harness's certificate alone is a sending system and an operator
// (docs/authorization.md, development bindings): it raises alerts and
// reads them, and every command on an alert or a policy without a person's
// token is refused with PermissionDenied and changes nothing. The same
// acknowledgement made for the signed-in referrer is applied.
func TestSecurityTheHarnessCertificateAloneCannotAct(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-CERT-1", "ACC-CERT-1", "F", "CRITICAL")) // raised as the sending system
	id := alertIDOf(t, sys, 60*time.Second)                        // read as the operator
	waitStepDue(t, sys, id, 0)
	ctx := context.Background()

	commands := map[string]func() error{
		"Acknowledge": func() error {
			_, err := sys.Ack.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "cert-ack"})
			return err
		},
		"Decline": func() error {
			_, err := sys.Ack.Decline(ctx, &ackv1.DeclineRequest{AlertId: id, RequestId: "cert-decline", Reason: eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM})
			return err
		},
		"RecordAction": func() error {
			_, err := sys.Ack.RecordAction(ctx, &ackv1.RecordActionRequest{AlertId: id, RequestId: "cert-action", Action: "chest drain"})
			return err
		},
		"MarkRead": func() error {
			_, err := sys.Ack.MarkRead(ctx, &ackv1.MarkReadRequest{AlertId: id, RequestId: "cert-read"})
			return err
		},
		"Close": func() error {
			_, err := sys.Ack.Close(ctx, &ackv1.CloseRequest{AlertId: id, RequestId: "cert-close", Reason: "no person"})
			return err
		},
	}
	rules := rulesClient(t, sys)
	files := changedBundle(t, sys, "e2e-by-certificate")
	var bundle []*rulesv1.BundleFile
	for name, content := range files {
		bundle = append(bundle, &rulesv1.BundleFile{Name: name, Content: content})
	}
	commands["LoadBundle"] = func() error {
		_, err := rules.LoadBundle(ctx, &rulesv1.LoadBundleRequest{Files: bundle})
		return err
	}
	commands["ProposeBundle"] = func() error {
		_, err := rules.ProposeBundle(ctx, &rulesv1.ProposeBundleRequest{Files: bundle})
		return err
	}
	commands["ApproveBundle"] = func() error {
		_, err := rules.ApproveBundle(ctx, &rulesv1.ApproveBundleRequest{Tenant: "RZZ", ContentHash: harness.BundleHash(files)})
		return err
	}
	for name, call := range commands {
		if err := call(); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s with the harness's certificate alone: got %v, want PermissionDenied", name, err)
		}
	}
	for _, ev := range sys.Events(t, id) {
		switch ev.GetPayload().(type) {
		case *eventsv1.Event_AlertAcknowledged, *eventsv1.Event_AlertDeclined, *eventsv1.Event_ActionRecorded, *eventsv1.Event_AlertRead, *eventsv1.Event_AlertClosed:
			t.Errorf("a refused command was applied: %T on the log", ev.GetPayload())
		}
	}
	if evs := bundleEvents(t, sys); len(evs) != 0 {
		t.Errorf("the policy-bundle topic holds %d events after refused calls, want none", len(evs))
	}

	// A person signed in makes the same call.
	if _, err := sys.Ack.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "referrer-ack"}, sys.As(t, harness.Referrer)); err != nil {
		t.Fatalf("Acknowledge by the signed-in referrer: %v", err)
	}
	if by := waitState(t, sys, id, ackv1.State_STATE_ACKNOWLEDGED, 30*time.Second).GetState().GetAcknowledgedBy(); by.GetPersonId() != harness.Referrer.ID {
		t.Errorf("acknowledged by %q, want %s", by.GetPersonId(), harness.Referrer.ID)
	}
}
