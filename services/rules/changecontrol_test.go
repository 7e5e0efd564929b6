package rules_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/rules/internal/app"
)

// rzyChange is the demo RZY bundle with a new version whose critical policy
// tells only the duty doctor first, waits 30 minutes instead of 10 and gives
// two hours to acknowledge a critical finding instead of one.
func rzyChange(t *testing.T, c rulesv1.RulesServiceClient, version string) []*rulesv1.BundleFile {
	t.Helper()
	active, err := c.GetActiveBundle(context.Background(), &rulesv1.GetActiveBundleRequest{Tenant: "RZY"})
	require.NoError(t, err)
	y := string(active.GetFiles()[0].GetContent())
	for _, r := range [][2]string{
		{`version: "2026.11.29-1"`, `version: "` + version + `"`},
		{"clocks: {communicate: 1h, acknowledge: 1h, action: 6h}", "clocks: {communicate: 1h, acknowledge: 2h, action: 6h}"},
		{"      - targets: [{kind: referrer}, {kind: oncall, ref: duty-doctor}]\n        timeout: 10m", "      - targets: [{kind: oncall, ref: duty-doctor}]\n        timeout: 30m"},
	} {
		require.Contains(t, y, r[0])
		y = strings.Replace(y, r[0], r[1], 1)
	}
	return []*rulesv1.BundleFile{{Name: "RZY/bundle.yaml", Content: []byte(y)}}
}

// bundleEvents reads the policy-bundle topic.
func (e *env) bundleEvents(t *testing.T) []*eventsv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*eventsv1.Event
	require.NoError(t, eventlog.ReadTopic(ctx, e.cfg.Log, e.cfg.BundleTopic, func(_, value []byte, _ int, _ int64) error {
		var ev eventsv1.Event
		require.NoError(t, proto.Unmarshal(value, &ev))
		out = append(out, &ev)
		return nil
	}))
	return out
}

// raise appends an AlertRaised of RZY (or another tenant) and returns its id.
func (e *env) raise(t *testing.T, tenant, accession string, flag eventsv1.Category, abnormal bool) string {
	t.Helper()
	at := time.Now().UTC().Truncate(time.Millisecond)
	d := details(flag, at.Add(-time.Minute))
	d.Accession, d.Encounter.PatientClass = accession, "O"
	if !abnormal {
		d.SourceFlag.AbnormalFlags = nil
	}
	id := eventlog.ID(tenant, accession, "F-1")
	require.NoError(t, e.w.Append(context.Background(), cause(id, "raised-"+accession, tenant, at, &eventsv1.AlertRaised{Details: d})))
	return id
}

func code(err error) codes.Code { return status.Code(err) }

func TestPolicyChangeNeedsASecondPerson(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	addr, _ := e.start(t, e.cfg)
	c := client(t, addr)
	files := rzyChange(t, c, "2026.12.07-1")

	// No person, or a person without a policy role, cannot propose.
	_, err := c.ProposeBundle(asNobody(ctx), &rulesv1.ProposeBundleRequest{Files: files})
	require.Equal(t, codes.Unauthenticated, code(err), "%v", err)
	_, err = c.ProposeBundle(as(ctx, bob), &rulesv1.ProposeBundleRequest{Files: files})
	require.Equal(t, codes.PermissionDenied, code(err), "%v", err)

	// Alice proposes: the proposal is recorded and pending, and changes nothing.
	proposed, err := c.ProposeBundle(as(ctx, alice), &rulesv1.ProposeBundleRequest{Files: files})
	require.NoError(t, err)
	p := proposed.GetProposal()
	hash := p.GetRef().GetContentHash()
	require.Equal(t, "alice", p.GetProposer().GetSubject())
	require.Equal(t, "policy-admin", p.GetProposer().GetRole())
	require.Equal(t, eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_UNSPECIFIED, p.GetOutcome())
	pending, err := c.ListPendingBundles(as(ctx, carol), &rulesv1.ListPendingBundlesRequest{Tenant: "RZY"})
	require.NoError(t, err)
	require.Len(t, pending.GetProposals(), 1)
	require.Equal(t, hash, pending.GetProposals()[0].GetRef().GetContentHash())
	active, err := c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZY"})
	require.NoError(t, err)
	require.Equal(t, "2026.11.29-1", active.GetRef().GetVersion())
	before := e.raise(t, "RZY", "ACC-P1", eventsv1.Category_CATEGORY_CRITICAL, true)
	routed := e.waitRouted(t, before, 1)[0]
	require.Equal(t, "2026.11.29-1", routed.GetPolicy().GetVersion())
	require.Equal(t, 10*time.Minute, routed.GetAlertRouted().GetPolicy().GetSteps()[0].GetTimeout().AsDuration())

	// Proposing the same content again (a retry) records nothing new.
	again, err := c.ProposeBundle(as(ctx, alice), &rulesv1.ProposeBundleRequest{Files: files})
	require.NoError(t, err)
	require.Equal(t, p.GetEventId(), again.GetProposal().GetEventId())

	// The proposer cannot approve it, not even from another account; nor
	// can a person without the role; nor can anyone approve another hash.
	_, err = c.ApproveBundle(as(ctx, alice), &rulesv1.ApproveBundleRequest{Tenant: "RZY", ContentHash: hash})
	require.Equal(t, codes.PermissionDenied, code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "two-person rule")
	_, err = c.ApproveBundle(as(ctx, alice2), &rulesv1.ApproveBundleRequest{Tenant: "RZY", ContentHash: hash})
	require.Equal(t, codes.PermissionDenied, code(err), "%v", err)
	_, err = c.ApproveBundle(as(ctx, bob), &rulesv1.ApproveBundleRequest{Tenant: "RZY", ContentHash: hash})
	require.Equal(t, codes.PermissionDenied, code(err), "%v", err)
	_, err = c.ApproveBundle(as(ctx, carol), &rulesv1.ApproveBundleRequest{Tenant: "RZY", ContentHash: active.GetRef().GetContentHash()})
	require.Equal(t, codes.FailedPrecondition, code(err), "%v", err)
	_, err = c.ApproveBundle(as(ctx, carol), &rulesv1.ApproveBundleRequest{Tenant: "RZY"})
	require.Equal(t, codes.InvalidArgument, code(err), "%v", err)
	active, err = c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZY"})
	require.NoError(t, err)
	require.Equal(t, "2026.11.29-1", active.GetRef().GetVersion())

	// Carol, a safety lead, approves: it is in force, and the next routed
	// alert names the new version and follows it.
	approved, err := c.ApproveBundle(as(ctx, carol), &rulesv1.ApproveBundleRequest{Tenant: "RZY", ContentHash: hash})
	require.NoError(t, err)
	require.True(t, approved.GetActive())
	require.Equal(t, eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_APPROVED, approved.GetProposal().GetOutcome())
	require.Equal(t, "carol", approved.GetProposal().GetReviewer().GetSubject())
	after := e.raise(t, "RZY", "ACC-P2", eventsv1.Category_CATEGORY_CRITICAL, true)
	routed = e.waitRouted(t, after, 1)[0]
	require.Equal(t, "2026.12.07-1", routed.GetPolicy().GetVersion())
	require.Equal(t, hash, routed.GetPolicy().GetContentHash())
	require.Equal(t, 30*time.Minute, routed.GetAlertRouted().GetPolicy().GetSteps()[0].GetTimeout().AsDuration())

	// Approving again (a retry) is answered the same and records nothing new;
	// proposing what is in force is refused.
	approved, err = c.ApproveBundle(as(ctx, carol), &rulesv1.ApproveBundleRequest{Tenant: "RZY", ContentHash: hash})
	require.NoError(t, err)
	require.True(t, approved.GetActive())
	_, err = c.ProposeBundle(as(ctx, alice), &rulesv1.ProposeBundleRequest{Files: files})
	require.Equal(t, codes.FailedPrecondition, code(err), "%v", err)

	// The topic holds one proposal by alice and one approval by carol, with
	// deterministic ids, the content hash and who.
	evs := e.bundleEvents(t)
	require.Len(t, evs, 2)
	require.Equal(t, app.ProposalEventID("RZY", hash, 1), evs[0].GetEventId())
	require.Equal(t, "alice", evs[0].GetBundleProposed().GetProposer().GetSubject())
	require.Equal(t, "rzy-alice", evs[0].GetBundleProposed().GetProposer().GetPersonId())
	require.Equal(t, "https://idp.test", evs[0].GetBundleProposed().GetProposer().GetIssuer())
	require.Equal(t, hash, evs[0].GetBundleProposed().GetRef().GetContentHash())
	require.Equal(t, app.ReviewEventID("RZY", hash, 1), evs[1].GetEventId())
	require.Equal(t, evs[0].GetEventId(), evs[1].GetCausationId())
	require.Equal(t, "carol", evs[1].GetBundleReviewed().GetReviewer().GetSubject())
	require.Equal(t, "safety-lead", evs[1].GetBundleReviewed().GetReviewer().GetRole())
	require.Equal(t, "alice", evs[1].GetBundleReviewed().GetProposer().GetSubject())
}

func TestPolicyProposalRejectedOrWithdrawnIsRecordedAndNeverInForce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	addr, _ := e.start(t, e.cfg)
	c := client(t, addr)
	files := rzyChange(t, c, "2026.12.07-2")
	proposed, err := c.ProposeBundle(as(ctx, alice), &rulesv1.ProposeBundleRequest{Files: files})
	require.NoError(t, err)
	hash := proposed.GetProposal().GetRef().GetContentHash()

	// A rejection needs a reason; carol rejects; it can no longer be approved.
	_, err = c.RejectBundle(as(ctx, carol), &rulesv1.RejectBundleRequest{Tenant: "RZY", ContentHash: hash})
	require.Equal(t, codes.InvalidArgument, code(err), "%v", err)
	rejected, err := c.RejectBundle(as(ctx, carol), &rulesv1.RejectBundleRequest{Tenant: "RZY", ContentHash: hash, Reason: "acknowledge clock too long"})
	require.NoError(t, err)
	require.Equal(t, eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_REJECTED, rejected.GetProposal().GetOutcome())
	_, err = c.ApproveBundle(as(ctx, carol), &rulesv1.ApproveBundleRequest{Tenant: "RZY", ContentHash: hash})
	require.Equal(t, codes.FailedPrecondition, code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "rejected")

	// Proposed again, it is a new round; its proposer withdraws it.
	again, err := c.ProposeBundle(as(ctx, alice), &rulesv1.ProposeBundleRequest{Files: files})
	require.NoError(t, err)
	require.Equal(t, uint32(2), again.GetProposal().GetRound())
	withdrawn, err := c.RejectBundle(as(ctx, alice), &rulesv1.RejectBundleRequest{Tenant: "RZY", ContentHash: hash, Reason: "wrong trust"})
	require.NoError(t, err)
	require.Equal(t, eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_WITHDRAWN, withdrawn.GetProposal().GetOutcome())
	pending, err := c.ListPendingBundles(as(ctx, carol), &rulesv1.ListPendingBundlesRequest{Tenant: "RZY"})
	require.NoError(t, err)
	require.Empty(t, pending.GetProposals())
	active, err := c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZY"})
	require.NoError(t, err)
	require.Equal(t, "2026.11.29-1", active.GetRef().GetVersion())

	var outcomes []eventsv1.BundleReviewOutcome
	for _, ev := range e.bundleEvents(t) {
		if r := ev.GetBundleReviewed(); r != nil {
			outcomes = append(outcomes, r.GetOutcome())
			require.NotEmpty(t, r.GetReason())
		}
	}
	require.Equal(t, []eventsv1.BundleReviewOutcome{eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_REJECTED, eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_WITHDRAWN}, outcomes)
}

func TestDryRunBundleAnswersWhichAlertsWouldBeRoutedDifferentlyAndToWhom(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	addr, _ := e.start(t, e.cfg)
	c := client(t, addr)

	// Given three alerts raised through Kafka and routed under the demo
	// bundles: a critical and an urgent one of RZY, a critical one of RZZ.
	critical := e.raise(t, "RZY", "ACC-D1", eventsv1.Category_CATEGORY_CRITICAL, true)
	urgent := e.raise(t, "RZY", "ACC-D2", eventsv1.Category_CATEGORY_URGENT, false)
	other := e.raise(t, "RZZ", "ACC-D3", eventsv1.Category_CATEGORY_CRITICAL, true)
	criticalRouted := e.waitRouted(t, critical, 1)[0]
	require.Equal(t, eventsv1.Category_CATEGORY_URGENT, e.waitRouted(t, urgent, 1)[0].GetAlertRouted().GetCategory())
	e.waitRouted(t, other, 1)
	files := rzyChange(t, c, "2026.12.07-3")

	// The dry run needs a person with a policy role for the trust.
	_, err := c.DryRunBundle(asNobody(ctx), &rulesv1.DryRunBundleRequest{Files: files, Days: 1})
	require.Equal(t, codes.Unauthenticated, code(err), "%v", err)
	_, err = c.DryRunBundle(as(ctx, bob), &rulesv1.DryRunBundleRequest{Files: files, Days: 1})
	require.Equal(t, codes.PermissionDenied, code(err), "%v", err)
	_, err = c.DryRunBundle(as(ctx, carol), &rulesv1.DryRunBundleRequest{Files: files, Days: 91})
	require.Equal(t, codes.InvalidArgument, code(err), "%v", err)

	// When the changed bundle is dry-run over the last day.
	resp, err := c.DryRunBundle(as(ctx, carol), &rulesv1.DryRunBundleRequest{Files: files, Days: 1})
	require.NoError(t, err)

	// Then both RZY routings are replayed and only the critical alert would
	// change: first step, its timeout and the acknowledge clock.
	require.Equal(t, uint32(2), resp.GetReplayed())
	require.Equal(t, uint32(1), resp.GetChanged())
	require.Len(t, resp.GetAlerts(), 1)
	a := resp.GetAlerts()[0]
	require.Equal(t, critical, a.GetAlertId())
	require.Equal(t, "RZY", a.GetTenant())
	require.Equal(t, "AlertRaised", a.GetCause())
	require.True(t, a.GetChanged())
	require.Equal(t, "2026.11.29-1", a.GetCurrent().GetPolicy().GetVersion())
	require.Equal(t, "2026.12.07-3", a.GetProposed().GetPolicy().GetVersion())
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, a.GetCurrent().GetCategory())
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, a.GetProposed().GetCategory())
	require.Equal(t, time.Hour, a.GetCurrent().GetAcknowledgeWithin().AsDuration())
	require.Equal(t, 2*time.Hour, a.GetProposed().GetAcknowledgeWithin().AsDuration())
	require.Equal(t, 10*time.Minute, a.GetCurrent().GetStepTimeouts()[0].AsDuration())
	require.Equal(t, 30*time.Minute, a.GetProposed().GetStepTimeouts()[0].AsDuration())
	require.Len(t, a.GetCurrent().GetFirstStepTargets(), 2)
	require.Len(t, a.GetProposed().GetFirstStepTargets(), 1)
	joined := strings.Join(a.GetDifferences(), "\n")
	require.Contains(t, joined, "first step targets [referrer, oncall_role:duty-doctor] -> [oncall_role:duty-doctor]")
	require.Contains(t, joined, "step timeouts [10m0s")
	require.Contains(t, joined, "acknowledge clock 1h0m0s -> 2h0m0s")

	// And to whom: the people the duty-doctor rota gives at the alert's time.
	at := criticalRouted.GetAlertRouted().GetClocks().GetStartedAt()
	want, err := c.ResolveTargets(ctx, &rulesv1.ResolveTargetsRequest{Tenant: "RZY", At: at,
		Targets: []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_ONCALL_ROLE, Ref: "duty-doctor"}}})
	require.NoError(t, err)
	require.NotEmpty(t, want.GetRecipients())
	var wantIDs, gotIDs []string
	for _, r := range want.GetRecipients() {
		wantIDs = append(wantIDs, r.GetRecipient().GetPersonId())
	}
	for _, r := range a.GetProposed().GetFirstStepRecipients() {
		gotIDs = append(gotIDs, r.GetPersonId())
	}
	require.Equal(t, wantIDs, gotIDs)
	require.NotEmpty(t, a.GetCurrent().GetFirstStepRecipients())

	// With the unchanged ones asked for, the urgent alert is listed too.
	all, err := c.DryRunBundle(as(ctx, carol), &rulesv1.DryRunBundleRequest{Files: files, Days: 1, IncludeUnchanged: true})
	require.NoError(t, err)
	require.Len(t, all.GetAlerts(), 2)

	// A pending proposal can be dry-run by its hash, with the same answer.
	proposed, err := c.ProposeBundle(as(ctx, alice), &rulesv1.ProposeBundleRequest{Files: files})
	require.NoError(t, err)
	byHash, err := c.DryRunBundle(as(ctx, carol), &rulesv1.DryRunBundleRequest{Tenant: "RZY", ContentHash: proposed.GetProposal().GetRef().GetContentHash(), Days: 1})
	require.NoError(t, err)
	require.Equal(t, resp.GetChanged(), byHash.GetChanged())
	require.Equal(t, resp.GetAlerts()[0].GetDifferences(), byHash.GetAlerts()[0].GetDifferences())

	// No patient data in the answer.
	text := protojson.Format(all)
	for _, secret := range []string{patientNHS, patientFamily, "Ottoline", reportText, "Ashworth", "ACC-D1", "+4477009"} {
		require.NotContains(t, text, secret)
	}
}

func TestApprovalReachesEveryReplicaAndARedeliveredReviewChangesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	addrA, stopA := e.start(t, e.cfg)
	addrB, _ := e.start(t, e.cfg)
	a, b := client(t, addrA), client(t, addrB)
	files := rzyChange(t, a, "2026.12.07-4")
	proposed, err := a.ProposeBundle(as(ctx, alice), &rulesv1.ProposeBundleRequest{Files: files})
	require.NoError(t, err)
	p := proposed.GetProposal()
	hash := p.GetRef().GetContentHash()

	// Given an approval a third replica appended before it died (it never
	// activated the bundle), then appended again (a producer retry) and a
	// later review of the same proposal by someone else.
	approval := &eventsv1.Event{EventId: app.ReviewEventID("RZY", hash, 1), Tenant: "RZY", OccurredAt: timestamppb.Now(), Producer: "rules",
		CausationId: p.GetEventId(), Policy: p.GetRef(),
		Payload: &eventsv1.Event_BundleReviewed{BundleReviewed: &eventsv1.BundleReviewed{Ref: p.GetRef(), Round: 1,
			Outcome:  eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_APPROVED,
			Reviewer: &eventsv1.PolicyPerson{Issuer: carol.Issuer, Subject: carol.Subject, PersonId: carol.PersonID, Role: "safety-lead"}, Proposer: p.GetProposer()}}}
	late := proto.Clone(approval).(*eventsv1.Event)
	late.GetBundleReviewed().Outcome = eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_REJECTED
	late.GetBundleReviewed().Reviewer = &eventsv1.PolicyPerson{Issuer: bob.Issuer, Subject: bob.Subject}
	w := eventlog.NewWriter(e.cfg.Log, "rules", telemetry.Nop("test"))
	t.Cleanup(func() { _ = w.Close() })
	for _, ev := range []*eventsv1.Event{approval, approval, late} {
		value, err := proto.Marshal(ev)
		require.NoError(t, err)
		require.NoError(t, w.Put(ctx, e.cfg.BundleTopic, "RZY", value))
	}

	// Then both replicas put it in force within their poll interval, once.
	for _, c := range []rulesv1.RulesServiceClient{a, b} {
		require.Eventually(t, func() bool {
			got, err := c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZY"})
			return err == nil && got.GetRef().GetContentHash() == hash
		}, 30*time.Second, 50*time.Millisecond)
		versions, err := c.ListBundleVersions(ctx, &rulesv1.ListBundleVersionsRequest{Tenant: "RZY"})
		require.NoError(t, err)
		require.Len(t, versions.GetVersions(), 2)
	}
	// The first review decided: carol approved it; retrying her approval
	// is answered the same; the late rejection is ignored.
	approved, err := b.ApproveBundle(as(ctx, carol), &rulesv1.ApproveBundleRequest{Tenant: "RZY", ContentHash: hash})
	require.NoError(t, err)
	require.Equal(t, "carol", approved.GetProposal().GetReviewer().GetSubject())
	require.True(t, approved.GetActive())

	// And a restarted replica (a new consumer group, too) starts with it.
	stopA()
	cfg := e.cfg
	cfg.GroupID = testinfra.UniqueName("rules-again")
	addrA, _ = e.start(t, cfg)
	got, err := client(t, addrA).GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZY"})
	require.NoError(t, err)
	require.Equal(t, hash, got.GetRef().GetContentHash())
}
