package acknowledgement_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/authz/authztest"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/sealing"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
)

// sealedRaised is raisedEvent with its patient data sealed under RZZ's key,
// as intake writes it.
func sealedRaised(t *testing.T, ring *sealing.Keyring, alertID string) *eventsv1.Event {
	t.Helper()
	ev := raisedEvent(alertID)
	require.NoError(t, ring.Seal(context.Background(), ev.GetTenant(), alertID, ev.GetAlertRaised().GetDetails()))
	return ev
}

// viewsOf returns the RecordViewed records of alertID chained so far.
func viewsOf(t *testing.T, e *env, alertID string) []*auditv1.AuditRecord {
	t.Helper()
	topics := audit.TopicsFor(e.cfg.Log.EventsTopic)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := audit.ReadTrail(ctx, e.cfg.Log, topics.Records, topics.Anchors)
	require.NoError(t, err)
	var out []*auditv1.AuditRecord
	for _, p := range tr.Records {
		if p.Record.GetEventType() == audit.TypeRecordViewed && p.Record.GetAlertId() == alertID {
			out = append(out, p.Record)
		}
	}
	return out
}

// TestPatientDetailsAreReadSealedAuditedAndShredded: GetAlert with
// include_details returns the alert's details as the log has them, the
// patient data sealed (this service holds no key and returns nothing in
// clear); each read is chained in the trust's audit trail with the reader
// as verified; a clinician of another trust, an operator and a safety lead
// of the trust are refused; and once the trust's key is destroyed, no
// AlertRaised on the log opens any more, the one this service returns
// included.
func TestPatientDetailsAreReadSealedAuditedAndShredded(t *testing.T) {
	e := authzEnv(t)
	dir := t.TempDir()
	kekFile, keyringFile := filepath.Join(dir, "kek"), filepath.Join(dir, "keyring.json")
	require.NoError(t, sealing.GenerateKEKFile(kekFile))
	kek, err := sealing.LoadFileKEK(kekFile)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = sealing.Rotate(ctx, keyringFile, kek, "RZZ", time.Now())
	require.NoError(t, err)
	ring, err := sealing.Open(keyringFile, kek)
	require.NoError(t, err)

	r := e.start("r1", app.Hooks{})
	as := func(sub string) context.Context { return authztest.As(ctx, sub) }
	a := newAlertID("details-a")
	e.append(ctx, sealedRaised(t, ring, a), routedEvent(a, nil, time.Hour), sentTo(a, "RZZ", "rzz-dr-ashworth"))
	require.Eventually(t, func() bool {
		g, err := r.client.GetAlert(as("clinician-a"), &ackv1.GetAlertRequest{AlertId: a})
		return err == nil && g.GetState().GetState() == ackv1.State_STATE_NOTIFIED
	}, time.Minute, 50*time.Millisecond)

	// Without include_details: no details, nothing recorded.
	g, err := r.client.GetAlert(as("clinician-a"), &ackv1.GetAlertRequest{AlertId: a})
	require.NoError(t, err)
	require.Nil(t, g.GetDetails())

	g, err = r.client.GetAlert(as("clinician-a"), &ackv1.GetAlertRequest{AlertId: a, IncludeDetails: true})
	require.NoError(t, err)
	d := g.GetDetails()
	require.Equal(t, "RZZ/1", d.GetSealed().GetKeyId())
	b, _ := proto.Marshal(g)
	for _, p := range []string{patientNHS, patientFamily, patientGiven, patientDOB, reportText} {
		require.False(t, bytes.Contains(b, []byte(p)), "%q in clear in GetAlert's answer", p)
	}
	opened, err := ring.Open(ctx, "RZZ", a, d)
	require.NoError(t, err, "the console, holding the key, opens what acknowledgement returns")
	require.Equal(t, patientNHS, opened.GetPatient().GetNhsNumber())
	require.Equal(t, reportText, opened.GetReportText())

	_, err = r.client.GetAlert(as("failsafe-a"), &ackv1.GetAlertRequest{AlertId: a, IncludeDetails: true})
	require.NoError(t, err, "a fail-safe officer of the trust reads the details")
	for _, sub := range []string{"clinician-b", "operator-a", "safety-lead"} {
		_, err = r.client.GetAlert(as(sub), &ackv1.GetAlertRequest{AlertId: a, IncludeDetails: true})
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%s reads the patient details: %v", sub, err)
	}

	// Each read is in the trust's chain with the reader as verified.
	var views []*auditv1.AuditRecord
	require.Eventually(t, func() bool {
		views = viewsOf(t, e, a)
		return len(views) >= 2
	}, 2*time.Minute, 200*time.Millisecond, "the two reads are chained")
	require.Len(t, views, 2, "a refused read is not a read")
	readers := map[string]string{}
	for _, v := range views {
		require.Equal(t, "RZZ", v.GetTrust())
		require.Equal(t, "viewed alert-details", v.GetDetail())
		readers[v.GetActor().GetPersonId()] = v.GetActor().GetRole()
	}
	require.Equal(t, map[string]string{"rzz-dr-ashworth": "clinician", "rzz-fso-patel": "failsafe-officer"}, readers)

	// Crypto-shredding: the records manager destroys RZZ's key. Every
	// AlertRaised of RZZ on the log, read afterwards, stays sealed.
	_, err = sealing.Destroy(keyringFile, "RZZ", "", "records-manager", time.Now())
	require.NoError(t, err)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	seen := 0
	require.NoError(t, eventlog.ReadTopic(rctx, e.cfg.Log, e.cfg.Log.EventsTopic, func(_, value []byte, _ int, _ int64) error {
		var ev eventsv1.Event
		require.NoError(t, proto.Unmarshal(value, &ev))
		if r := ev.GetAlertRaised(); r != nil && ev.GetAlertId() == a {
			seen++
			_, err := ring.Open(ctx, ev.GetTenant(), ev.GetAlertId(), r.GetDetails())
			require.True(t, errors.Is(err, sealing.ErrDestroyed), "opens after shredding: %v", err)
		}
		return nil
	}))
	require.Equal(t, 1, seen)
	g, err = r.client.GetAlert(as("clinician-a"), &ackv1.GetAlertRequest{AlertId: a, IncludeDetails: true})
	require.NoError(t, err)
	_, err = ring.Open(ctx, "RZZ", a, g.GetDetails())
	require.ErrorIs(t, err, sealing.ErrDestroyed)
}

// TestARetriedDetailsReadIsOneAuditRecord: the view id of GetAlert with
// include_details comes from the access token's id, so the same call made
// again with the same token (a retry after a lost answer) is chained once,
// while a read with another token (a new sign-in) is a second record.
func TestARetriedDetailsReadIsOneAuditRecord(t *testing.T) {
	e := authzEnv(t)
	ctx := context.Background()
	r := e.start("r1", app.Hooks{})
	a := newAlertID("details-retry")
	e.append(ctx, raisedEvent(a), routedEvent(a, nil, time.Hour), sentTo(a, "RZZ", "rzz-dr-ashworth"))
	first := authztest.AsWithToken(ctx, "clinician-a", "jti-1")
	require.Eventually(t, func() bool {
		g, err := r.client.GetAlert(first, &ackv1.GetAlertRequest{AlertId: a})
		return err == nil && g.GetState().GetState() == ackv1.State_STATE_NOTIFIED
	}, time.Minute, 50*time.Millisecond)

	for range 3 { // the call, and two retries of it with the same token
		_, err := r.client.GetAlert(first, &ackv1.GetAlertRequest{AlertId: a, IncludeDetails: true})
		require.NoError(t, err)
	}
	_, err := r.client.GetAlert(authztest.AsWithToken(ctx, "clinician-a", "jti-2"), &ackv1.GetAlertRequest{AlertId: a, IncludeDetails: true})
	require.NoError(t, err)
	// Last, a read by another person: the intake keeps a trust's entries in
	// order, so once it is chained every earlier submission is too.
	_, err = r.client.GetAlert(authztest.AsWithToken(ctx, "failsafe-a", "jti-3"), &ackv1.GetAlertRequest{AlertId: a, IncludeDetails: true})
	require.NoError(t, err)

	var views []*auditv1.AuditRecord
	require.Eventually(t, func() bool {
		views = viewsOf(t, e, a)
		return len(views) > 0 && views[len(views)-1].GetActor().GetPersonId() == "rzz-fso-patel"
	}, 2*time.Minute, 200*time.Millisecond, "the last read is chained")
	require.Len(t, views, 3, "three calls with one token are one read; another token is another read")
	require.Equal(t, "rzz-dr-ashworth", views[0].GetActor().GetPersonId())
	require.Equal(t, "rzz-dr-ashworth", views[1].GetActor().GetPersonId())
	require.NotEqual(t, views[0].GetEventId(), views[1].GetEventId())
}
