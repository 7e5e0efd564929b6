package audit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

// chainOf returns n chained records of trust RXF.
func chainOf(t *testing.T, n int) []*auditv1.AuditRecord {
	t.Helper()
	c := audit.NewChain("RXF")
	var out []*auditv1.AuditRecord
	for i := range n {
		rec := c.Next(&auditv1.AuditRecord{AlertId: "a1", EventId: fmt.Sprintf("e%d", i+1), EventType: "AlertAcknowledged",
			Actor:      &auditv1.AuditActor{PersonId: "dr-who", Issuer: "https://cis2", Subject: "s1", Acr: "AAL3"},
			OccurredAt: timestamppb.New(time.Date(2026, 12, 7, 10, 0, i, 0, time.UTC)), PolicyVersion: "3"})
		require.True(t, c.Follow(rec), "record %d follows", i+1)
		out = append(out, rec)
	}
	return out
}

func verify(recs []*auditv1.AuditRecord, anchors ...*eventsv1.AuditAnchored) audit.Report {
	v := audit.NewVerifier()
	for i, r := range recs {
		v.Record(r, fmt.Sprintf("0/%d", i))
	}
	for _, a := range anchors {
		v.Anchor(a)
	}
	return v.Finish()
}

func clone(r *auditv1.AuditRecord) *auditv1.AuditRecord { return proto.Clone(r).(*auditv1.AuditRecord) }

func TestVerifyAcceptsAnIntactChainWithRedeliveredDuplicates(t *testing.T) {
	recs := chainOf(t, 5)
	stream := append(append([]*auditv1.AuditRecord{}, recs...), clone(recs[2]), clone(recs[4]))
	rep := verify(stream, &eventsv1.AuditAnchored{Trust: "RXF", Sequence: 5, HeadHash: recs[4].GetHash()})
	require.True(t, rep.OK(), "problems: %v", rep.Problems)
	require.Equal(t, 5, rep.Trusts[0].Records)
	require.Equal(t, 2, rep.Trusts[0].Duplicates)
	require.Equal(t, uint64(5), rep.Trusts[0].Head)
}

func TestVerifyNamesEachKindOfTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(recs []*auditv1.AuditRecord) []*auditv1.AuditRecord
		kind   audit.Kind
		seq    uint64
	}{
		{"modified in place", func(recs []*auditv1.AuditRecord) []*auditv1.AuditRecord {
			recs[2].Actor.PersonId = "someone-else"
			return recs
		}, audit.Modified, 3},
		{"modified and rehashed", func(recs []*auditv1.AuditRecord) []*auditv1.AuditRecord {
			recs[2].Actor.PersonId = "someone-else"
			recs[2].Hash = audit.Hash(recs[2])
			return recs
		}, audit.Modified, 3},
		{"removed", func(recs []*auditv1.AuditRecord) []*auditv1.AuditRecord {
			return append(recs[:2:2], recs[3:]...)
		}, audit.Removed, 3},
		{"reordered", func(recs []*auditv1.AuditRecord) []*auditv1.AuditRecord {
			recs[1], recs[2] = recs[2], recs[1]
			return recs
		}, audit.Reordered, 2},
		{"inserted", func(recs []*auditv1.AuditRecord) []*auditv1.AuditRecord {
			forged := clone(recs[3])
			forged.EventId, forged.Actor.PersonId = "forged", "dr-forger"
			forged.Hash = audit.Hash(forged)
			return append(recs[:4:4], append([]*auditv1.AuditRecord{forged}, recs[4:]...)...)
		}, audit.Inserted, 4},
		{"truncated after an anchor", func(recs []*auditv1.AuditRecord) []*auditv1.AuditRecord {
			return recs[:3]
		}, audit.Truncated, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := chainOf(t, 5)
			anchor := &eventsv1.AuditAnchored{Trust: "RXF", Sequence: 5, HeadHash: recs[4].GetHash()}
			rep := verify(tc.tamper(recs), anchor)
			require.False(t, rep.OK(), "verify found nothing")
			var kinds []string
			found := false
			for _, p := range rep.Problems {
				kinds = append(kinds, p.String())
				if p.Kind == tc.kind && p.Sequence == tc.seq {
					found = true
				}
			}
			require.True(t, found, "got %v, want a %s problem at sequence %d", kinds, tc.kind, tc.seq)
		})
	}
}

func TestVerifyCatchesARewrittenTailOnlyThroughTheAnchor(t *testing.T) {
	recs := chainOf(t, 5)
	anchor := &eventsv1.AuditAnchored{Trust: "RXF", Sequence: 5, HeadHash: recs[4].GetHash()}
	// Rewrite record 4 and re-chain 5 after it: the links hold again.
	c := audit.NewChain("RXF")
	for _, r := range recs[:3] {
		require.True(t, c.Follow(r))
	}
	r4 := clone(recs[3])
	r4.Actor.PersonId = "dr-forger"
	r4 = c.Next(r4)
	require.True(t, c.Follow(r4))
	r5 := c.Next(recs[4])
	rewritten := append(recs[:3:3], r4, r5)
	require.True(t, verify(rewritten).OK(), "without the anchor a consistent rewrite looks intact")
	rep := verify(rewritten, anchor)
	require.False(t, rep.OK())
	require.Equal(t, audit.Modified, rep.Problems[0].Kind)
	require.Equal(t, uint64(5), rep.Problems[0].Sequence)
}

func TestFollowSkipsDuplicatesAndRecordsThatDoNotFollow(t *testing.T) {
	recs := chainOf(t, 3)
	c := audit.NewChain("RXF")
	require.True(t, c.Follow(recs[0]))
	require.False(t, c.Follow(recs[0]), "a duplicate is not followed twice")
	require.False(t, c.Follow(recs[2]), "a record after a gap is not followed")
	require.True(t, c.Follow(recs[1]))
	require.True(t, c.Chained("e2"))
	require.False(t, c.Chained("e3"))
	require.Equal(t, uint64(2), c.Sequence)
}

func TestCanonicalCoversEveryField(t *testing.T) {
	base := chainOf(t, 1)[0]
	h := audit.Hash(base)
	for name, change := range map[string]func(r *auditv1.AuditRecord){
		"sequence": func(r *auditv1.AuditRecord) { r.Sequence++ },
		"trust":    func(r *auditv1.AuditRecord) { r.Trust = "RYJ" },
		"alert":    func(r *auditv1.AuditRecord) { r.AlertId = "a2" },
		"event":    func(r *auditv1.AuditRecord) { r.EventId = "x" },
		"type":     func(r *auditv1.AuditRecord) { r.EventType = "AlertClosed" },
		"person":   func(r *auditv1.AuditRecord) { r.Actor.PersonId = "x" },
		"role":     func(r *auditv1.AuditRecord) { r.Actor.Role = "x" },
		"idp":      func(r *auditv1.AuditRecord) { r.Actor.IdentityProvider = "x" },
		"issuer":   func(r *auditv1.AuditRecord) { r.Actor.Issuer = "x" },
		"subject":  func(r *auditv1.AuditRecord) { r.Actor.Subject = "x" },
		"acr":      func(r *auditv1.AuditRecord) { r.Actor.Acr = "x" },
		"relay":    func(r *auditv1.AuditRecord) { r.Actor.RelayingService = "x" },
		"time": func(r *auditv1.AuditRecord) {
			r.OccurredAt = timestamppb.New(r.OccurredAt.AsTime().Add(time.Nanosecond))
		},
		"policy":   func(r *auditv1.AuditRecord) { r.PolicyId = "x" },
		"version":  func(r *auditv1.AuditRecord) { r.PolicyVersion = "4" },
		"content":  func(r *auditv1.AuditRecord) { r.PolicyContentHash = "x" },
		"producer": func(r *auditv1.AuditRecord) { r.Producer = "x" },
		"detail":   func(r *auditv1.AuditRecord) { r.Detail = "x" },
		"prev":     func(r *auditv1.AuditRecord) { r.PrevHash = []byte("x") },
		// Moving a byte from one field to the next changes the hash too
		// (length prefixes).
		"boundary": func(r *auditv1.AuditRecord) { r.AlertId, r.EventId = r.AlertId+"e", r.EventId[1:] },
	} {
		r := clone(base)
		change(r)
		require.NotEqual(t, h, audit.Hash(r), "a change of %s leaves the hash as it was", name)
	}
}

func TestEntryOfRecordsCommandsWithoutPatientData(t *testing.T) {
	at := timestamppb.New(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	env := func(id string) *eventsv1.Event {
		return &eventsv1.Event{EventId: id, AlertId: "a1", Tenant: "RXF", OccurredAt: at, Producer: "acknowledgement/r1",
			Policy: &eventsv1.PolicyRef{PolicyId: "p", Version: "7", ContentHash: "abc"}}
	}
	ack := env("e1")
	ack.Payload = &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{
		Actor: &eventsv1.Actor{PersonId: "dr-1", DisplayName: "Dr One", Role: "clinician", IdentityProvider: "oidc"}, Step: 1, Via: "link"}}
	rec, ok := audit.EntryOf(ack)
	require.True(t, ok)
	require.Equal(t, "AlertAcknowledged", rec.GetEventType())
	require.Equal(t, "dr-1", rec.GetActor().GetPersonId())
	require.Equal(t, "oidc", rec.GetActor().GetIdentityProvider())
	require.Equal(t, "7", rec.GetPolicyVersion())
	require.Equal(t, "step=1 via=link", rec.GetDetail())

	action := env("e2")
	action.Payload = &eventsv1.Event_ActionRecorded{ActionRecorded: &eventsv1.ActionRecorded{
		Actor: &eventsv1.Actor{PersonId: "dr-1"}, Action: "CT booked for Mrs Smith"}}
	rec, ok = audit.EntryOf(action)
	require.True(t, ok)
	require.NotContains(t, string(audit.Canonical(rec)), "Smith", "the action's text is not audited")

	raised := env("e3")
	raised.Payload = &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: &eventsv1.AlertDetails{ReportText: "mass in the left lung"}}}
	_, ok = audit.EntryOf(raised)
	require.False(t, ok, "a raised alert is no person's command")

	resend := env("e4")
	resend.CausationId = "operator:op-7"
	resend.Payload = &eventsv1.Event_NotificationSent{NotificationSent: &eventsv1.NotificationSent{NotificationId: "n1", Step: 2, Channel: eventsv1.Channel_CHANNEL_SMS}}
	rec, ok = audit.EntryOf(resend)
	require.True(t, ok, "a resend is audited")
	require.Equal(t, "op-7", rec.GetActor().GetPersonId())

	sent := env("e5")
	sent.Payload = &eventsv1.Event_NotificationSent{NotificationSent: &eventsv1.NotificationSent{NotificationId: "n1"}}
	_, ok = audit.EntryOf(sent)
	require.False(t, ok, "an ordinary send is not a command")
}

func TestTopicsForAnotherLogAreItsOwn(t *testing.T) {
	require.Equal(t, audit.DefaultTopics(), audit.TopicsFor("herald.alert-events.v1"))
	other := audit.TopicsFor("herald.alert-events.v1-e2e-7")
	require.Equal(t, "herald.alert-events.v1-e2e-7.audit", other.Records, "a test's log has its own trail (and stays under the log's ACL prefix)")
	require.NotEqual(t, other.Intake, audit.DefaultTopics().Intake)
}

func TestEntryOfPolicyBundleEventsNamesTheReviewer(t *testing.T) {
	ev := &eventsv1.Event{EventId: "b1", Tenant: "RXF", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_BundleReviewed{BundleReviewed: &eventsv1.BundleReviewed{
			Ref:      &eventsv1.PolicyRef{PolicyId: "rxf", Version: "13", ContentHash: "abc"},
			Outcome:  eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_APPROVED,
			Reviewer: &eventsv1.PolicyPerson{Issuer: "https://cis2", Subject: "s-2", PersonId: "safety-lead-2", Acr: "AAL3", Service: "spiffe://herald/console"},
			Proposer: &eventsv1.PolicyPerson{PersonId: "admin-1"}, Round: 1}}}
	rec, ok := audit.EntryOf(ev)
	require.True(t, ok)
	require.Equal(t, "BundleReviewed", rec.GetEventType())
	require.Equal(t, "safety-lead-2", rec.GetActor().GetPersonId(), "the reviewer acted")
	require.Equal(t, "AAL3", rec.GetActor().GetAcr())
	require.Equal(t, "spiffe://herald/console", rec.GetActor().GetRelayingService())
	require.Equal(t, "13", rec.GetPolicyVersion())
	require.Equal(t, "approved round=1 proposer=admin-1", rec.GetDetail())

	prop := &eventsv1.Event{EventId: "b0", Tenant: "RXF", Payload: &eventsv1.Event_BundleProposed{BundleProposed: &eventsv1.BundleProposed{
		Ref: &eventsv1.PolicyRef{Version: "13"}, Proposer: &eventsv1.PolicyPerson{PersonId: "admin-1"},
		Files: []*eventsv1.PolicyBundleFile{{Name: "RXF/policy.yaml", Content: []byte("secret-policy-content")}}}}}
	rec, ok = audit.EntryOf(prop)
	require.True(t, ok)
	require.Equal(t, "admin-1", rec.GetActor().GetPersonId())
	require.NotContains(t, string(audit.Canonical(rec)), "secret-policy-content", "the bundle's files are not copied")
}
