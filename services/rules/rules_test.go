package rules_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/rules"
)

// Synthetic patient data: none of it may reach a log line.
const (
	patientNHS    = "9990000034"
	patientFamily = "Quillfeatherstone"
	reportText    = "Large left-sided tension pneumothorax"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	cfg  rules.Config
	logs *syncBuffer
	w    *eventlog.Writer
	// authn is the authentication stand-in (nil: none).
	authn grpcserver.Option
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cfg := rules.DefaultConfig()
	cfg.Security = servicemain.DevelopmentInsecure()
	cfg.GRPC.Addr = "127.0.0.1:0"
	cfg.Log.Brokers = testinfra.KafkaBrokers(t)
	cfg.Log.EventsTopic = testinfra.NewTopic(t, "rules-events", 3)
	cfg.Log.DLQTopic = testinfra.NewTopic(t, "rules-dlq", 1)
	cfg.Log.StateTopic = testinfra.NewTopic(t, "rules-state", 1)
	cfg.BundleTopic = testinfra.NewTopic(t, "rules-bundles", 1)
	cfg.GroupID = testinfra.UniqueName("rules")
	cfg.BundleFS = rules.DemoBundles()
	cfg.BundlePoll = 50 * time.Millisecond
	e := &env{cfg: cfg, logs: &syncBuffer{}}
	e.w = eventlog.NewWriter(cfg.Log, "test-intake", telemetry.Nop("test"))
	t.Cleanup(func() { _ = e.w.Close() })
	return e
}

// start runs the service until the returned stop is called (or the test ends).
func (e *env) start(t *testing.T, cfg rules.Config) (addr string, stop func()) {
	t.Helper()
	return e.startLogging(t, cfg, e.logs)
}

func (e *env) startLogging(t *testing.T, cfg rules.Config, logs *syncBuffer) (addr string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	authn := e.authn
	if authn == nil {
		// no role bindings: authorization is off, and the change-control
		// tests name their person in metadata (identity_test.go)
		authn = testIdentity()
	}
	svc, err := rules.New(ctx, cfg, rules.Deps{Logger: logging.New(logs, -4, "rules"), Authentication: authn})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Fatal("rules service did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return svc.Addrs()["grpc"], stop
}

func client(t *testing.T, addr string) rulesv1.RulesServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return rulesv1.NewRulesServiceClient(conn)
}

func details(flag eventsv1.Category, reported time.Time) *eventsv1.AlertDetails {
	return &eventsv1.AlertDetails{
		Source:          eventsv1.Source_SOURCE_HL7V2,
		SourceMessageId: "MSG1",
		Accession:       "ACC-1",
		FindingCode:     "F-1",
		Patient:         &eventsv1.Patient{NhsNumber: patientNHS, FamilyName: patientFamily, GivenName: "Ottoline", BirthDate: "1950-02-03"},
		Exam:            &eventsv1.Exam{Code: "CCHEST", Modality: "CT"},
		SourceFlag:      &eventsv1.SourceFlag{Category: flag, AbnormalFlags: []string{"AA"}},
		ReportStatus:    eventsv1.ReportStatus_REPORT_STATUS_FINAL,
		Referrer:        &eventsv1.Clinician{Id: "7100001", DisplayName: "Dr Ada Ashworth", Team: "ED"},
		Encounter:       &eventsv1.Encounter{PatientClass: "E", Location: "RZZ01^ED"},
		ReportText:      reportText,
		ReportedAt:      timestamppb.New(reported),
	}
}

func cause(alertID, eventID, tenant string, at time.Time, payload any) *eventsv1.Event {
	ev := &eventsv1.Event{EventId: eventID, AlertId: alertID, Tenant: tenant, OccurredAt: timestamppb.New(at), Producer: "intake", SchemaVersion: 1}
	switch p := payload.(type) {
	case *eventsv1.AlertRaised:
		ev.Payload = &eventsv1.Event_AlertRaised{AlertRaised: p}
	case *eventsv1.AlertAmended:
		ev.Payload = &eventsv1.Event_AlertAmended{AlertAmended: p}
	case *eventsv1.AlertQuarantined:
		ev.Payload = &eventsv1.Event_AlertQuarantined{AlertQuarantined: p}
	}
	return ev
}

// routedOf reads the whole topic and returns the AlertRouted events of alertID.
func (e *env) routedOf(t *testing.T, alertID string) []*eventsv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*eventsv1.Event
	err := eventlog.ReadTopic(ctx, e.cfg.Log, e.cfg.Log.EventsTopic, func(_, value []byte, _ int, _ int64) error {
		var ev eventsv1.Event
		require.NoError(t, proto.Unmarshal(value, &ev))
		if ev.GetAlertId() == alertID && ev.GetAlertRouted() != nil {
			out = append(out, &ev)
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// waitRouted waits until alertID has n AlertRouted events.
func (e *env) waitRouted(t *testing.T, alertID string, n int) []*eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := e.routedOf(t, alertID)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert %s: got %d AlertRouted events after 90s, want %d", alertID, len(got), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRaisedAlertIsRoutedExactlyOnceUnderRedeliveryAndRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Millisecond)
	reported := at.Add(-5 * time.Minute)
	alertID := eventlog.ID("RZZ", "ACC-1", "F-1")
	raised := cause(alertID, "raised-1", "RZZ", at, &eventsv1.AlertRaised{Details: details(eventsv1.Category_CATEGORY_URGENT, reported)})

	// Given the same AlertRaised appended twice (a producer retry).
	require.NoError(t, e.w.Append(ctx, raised, raised))

	// When the service consumes them.
	addr, stop := e.start(t, e.cfg)
	got := e.waitRouted(t, alertID, 1)

	// Then one AlertRouted is appended, with a deterministic id, the
	// upgraded category, absolute clocks and the policy snapshot.
	ev := got[0]
	require.Equal(t, eventlog.ID(alertID, "routed", "raised-1"), ev.GetEventId())
	require.Equal(t, "raised-1", ev.GetCausationId())
	require.Equal(t, "RZZ", ev.GetTenant())
	require.Equal(t, "rules", ev.GetProducer())
	r := ev.GetAlertRouted()
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, r.GetCategory())
	require.Equal(t, "aa-emergency-cross-sectional", r.GetRuleId())
	require.Contains(t, r.GetClassificationReason(), "upgraded the source's URGENT")
	// The clocks run from receipt (the cause's occurred_at), the later of
	// it and the report's verification; the verification time is kept.
	require.Equal(t, at.Add(time.Hour), r.GetClocks().GetAcknowledgeBy().AsTime())
	require.Equal(t, at.Add(4*time.Hour), r.GetClocks().GetActionBy().AsTime())
	require.Equal(t, reported, r.GetClocks().GetReportedAt().AsTime())
	require.Equal(t, "critical", ev.GetPolicy().GetPolicyId())
	require.True(t, proto.Equal(ev.GetPolicy(), r.GetPolicy().GetRef()))
	require.Len(t, ev.GetPolicy().GetContentHash(), 64)
	require.Len(t, r.GetPolicy().GetSteps(), 4)

	// And Evaluate for the same alert and instant gives the same decision.
	resp, err := client(t, addr).Evaluate(ctx, &rulesv1.EvaluateRequest{Tenant: "RZZ", Details: raised.GetAlertRaised().GetDetails(), At: raised.GetOccurredAt()})
	require.NoError(t, err)
	require.True(t, proto.Equal(r, resp.GetRouted()), "got %v, want %v", resp.GetRouted(), r)
	require.NotEmpty(t, resp.GetTimeline())

	// When the service restarts and the AlertRaised is delivered again, this
	// time to a consumer group with no committed offsets (everything redelivered).
	stop()
	require.NoError(t, e.w.Append(ctx, raised))
	cfg := e.cfg
	cfg.GroupID = testinfra.UniqueName("rules-again")
	e.start(t, cfg)
	// A later alert marks how far the restarted service has got.
	marker := eventlog.ID("RZZ", "ACC-2", "F-2")
	require.NoError(t, e.w.Append(ctx, cause(marker, "raised-2", "RZZ", at, &eventsv1.AlertRaised{Details: details(eventsv1.Category_CATEGORY_URGENT, reported)})))
	e.waitRouted(t, marker, 1)

	// Then there is still exactly one AlertRouted for the alert.
	require.Len(t, e.routedOf(t, alertID), 1)

	// And no patient data reached the logs.
	logs := e.logs.String()
	require.Contains(t, logs, "alert routed")
	for _, secret := range []string{patientNHS, patientFamily, "Ottoline", reportText, "Ashworth", "+4477009", "example.nhs.uk"} {
		require.NotContains(t, logs, secret)
	}
}

func TestAmendmentsUpgradeNeverSilentlyDowngradeAndQuarantineGoesToFailsafe(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Millisecond)
	e.start(t, e.cfg)

	// Given a critical alert, then an amendment that says urgent.
	a := eventlog.ID("RZZ", "ACC-3", "F-3")
	d := details(eventsv1.Category_CATEGORY_CRITICAL, at)
	require.NoError(t, e.w.Append(ctx, cause(a, "raised-3", "RZZ", at, &eventsv1.AlertRaised{Details: d})))
	e.waitRouted(t, a, 1)
	amended := proto.Clone(d).(*eventsv1.AlertDetails)
	amended.SourceFlag = &eventsv1.SourceFlag{Category: eventsv1.Category_CATEGORY_URGENT}
	require.NoError(t, e.w.Append(ctx, cause(a, "amended-3", "RZZ", at.Add(time.Minute), &eventsv1.AlertAmended{Details: amended, Reason: "corrected"})))

	// Then the second routing keeps CRITICAL and says why.
	got := e.waitRouted(t, a, 2)
	r := got[1].GetAlertRouted()
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, r.GetCategory())
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, r.GetPreviousCategory())
	require.Contains(t, r.GetClassificationReason(), "kept CRITICAL")
	require.Equal(t, "amended-3", got[1].GetCausationId())

	// Given an urgent alert amended to critical: it is upgraded.
	b := eventlog.ID("RZY", "ACC-4", "F-4")
	db := details(eventsv1.Category_CATEGORY_URGENT, at)
	db.SourceFlag.AbnormalFlags = nil
	require.NoError(t, e.w.Append(ctx, cause(b, "raised-4", "RZY", at, &eventsv1.AlertRaised{Details: db})))
	e.waitRouted(t, b, 1)
	up := proto.Clone(db).(*eventsv1.AlertDetails)
	up.SourceFlag.Category = eventsv1.Category_CATEGORY_CRITICAL
	require.NoError(t, e.w.Append(ctx, cause(b, "amended-4", "RZY", at, &eventsv1.AlertAmended{Details: up})))
	got = e.waitRouted(t, b, 2)
	require.Equal(t, eventsv1.Category_CATEGORY_URGENT, got[0].GetAlertRouted().GetCategory())
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, got[1].GetAlertRouted().GetCategory())
	require.Equal(t, eventsv1.Category_CATEGORY_URGENT, got[1].GetAlertRouted().GetPreviousCategory())

	// Given a quarantined alert: it goes to the trust's fail-safe policy.
	q := eventlog.ID("RZY", "ACC-5", "F-5")
	require.NoError(t, e.w.Append(ctx, cause(q, "quarantined-5", "RZY", at, &eventsv1.AlertQuarantined{Details: db,
		Problems: []*eventsv1.ValidationProblem{{Field: "PID-3", Problem: "NHS number fails its check digit"}}})))
	got = e.waitRouted(t, q, 1)
	require.Equal(t, "quarantine", got[0].GetPolicy().GetPolicyId())
	require.Contains(t, got[0].GetAlertRouted().GetClassificationReason(), "quarantined (PID-3)")
}

func TestAlertOfATenantWithoutABundleIsDeadLettered(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start(t, e.cfg)
	// Given an alert of a trust with no bundle.
	a := eventlog.ID("RXX", "ACC-9", "F-9")
	require.NoError(t, e.w.Append(ctx, cause(a, "raised-9", "RXX", time.Now(), &eventsv1.AlertRaised{Details: details(eventsv1.Category_CATEGORY_CRITICAL, time.Now())})))
	// Then it lands in the dead-letter topic with the reason.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.cfg.Log.Brokers, Topic: e.cfg.Log.DLQTopic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer func() { _ = r.Close() }()
	rctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	m, err := r.ReadMessage(rctx)
	require.NoError(t, err)
	var reason string
	for _, h := range m.Headers {
		if h.Key == eventlog.HeaderDLQReason {
			reason = string(h.Value)
		}
	}
	require.Contains(t, reason, `no policy bundle is active for the tenant`)
	require.Empty(t, e.routedOf(t, a))
}

func TestGRPCAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	addr, _ := e.start(t, e.cfg)
	c := client(t, addr)

	// The active bundle and its versions.
	active, err := c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZY"})
	require.NoError(t, err)
	require.Equal(t, "2026.11.29-1", active.GetRef().GetVersion())
	require.Len(t, active.GetFiles(), 1)
	_, err = c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RXX"})
	require.Equal(t, codes.NotFound, status.Code(err))

	// ResolveTargets: the on-call consultant radiologist with contact points in order.
	monday := time.Date(2026, 1, 12, 10, 0, 0, 0, time.UTC)
	res, err := c.ResolveTargets(ctx, &rulesv1.ResolveTargetsRequest{Tenant: "RZZ", AlertId: "a", At: timestamppb.New(monday),
		Targets:  []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_ONCALL_ROLE, Ref: "consultant-radiologist"}, {Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER}},
		Referrer: &eventsv1.Clinician{Id: "7100007"}})
	require.NoError(t, err)
	require.Len(t, res.GetRecipients(), 2)
	require.Equal(t, "rzz-dr-evans", res.GetRecipients()[0].GetRecipient().GetPersonId())
	require.Equal(t, eventsv1.Channel_CHANNEL_SMS, res.GetRecipients()[0].GetContactPoints()[0].GetChannel())
	require.Equal(t, "rzz-dr-gupta", res.GetRecipients()[1].GetRecipient().GetPersonId())
	_, err = c.ResolveTargets(ctx, &rulesv1.ResolveTargetsRequest{Tenant: "RZZ"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))

	// CheckReachability: the demo reaches someone every hour.
	reach, err := c.CheckReachability(ctx, &rulesv1.CheckReachabilityRequest{Tenant: "RZZ"})
	require.NoError(t, err)
	require.Empty(t, reach.GetGaps())

	// ValidateBundle reports problems with file and path; LoadBundle refuses them.
	broken := []*rulesv1.BundleFile{}
	for _, f := range active.GetFiles() {
		broken = append(broken, &rulesv1.BundleFile{Name: f.GetName(), Content: []byte(strings.Replace(string(f.GetContent()), "timeout: 10m", "timeout: soon", 1))})
	}
	v, err := c.ValidateBundle(ctx, &rulesv1.ValidateBundleRequest{Files: broken})
	require.NoError(t, err)
	require.Len(t, v.GetProblems(), 1)
	require.Equal(t, "RZY/bundle.yaml", v.GetProblems()[0].GetFile())
	require.Equal(t, "policies[0].steps[0].timeout", v.GetProblems()[0].GetPath())
	_, err = c.LoadBundle(ctx, &rulesv1.LoadBundleRequest{Files: broken})
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code())
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				fields = append(fields, fv.GetField())
			}
		}
	}
	require.Equal(t, []string{"RZY/bundle.yaml:policies[0].steps[0].timeout"}, fields)

	// A changed bundle with the same version is refused; with a new version
	// it is proposed and, approved by a second person, in force.
	changed := []*rulesv1.BundleFile{{Name: "RZY/bundle.yaml", Content: []byte(strings.Replace(string(active.GetFiles()[0].GetContent()), "timeout: 10m", "timeout: 5m", 1))}}
	_, err = c.LoadBundle(as(ctx, alice), &rulesv1.LoadBundleRequest{Files: changed})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "version")
	changed[0].Content = []byte(strings.Replace(string(changed[0].GetContent()), `version: "2026.11.29-1"`, `version: "2026.11.29-2"`, 1))
	loaded, err := c.LoadBundle(as(ctx, alice), &rulesv1.LoadBundleRequest{Files: changed})
	require.NoError(t, err)
	require.Equal(t, "2026.11.29-2", loaded.GetRef().GetVersion())
	_, err = c.ApproveBundle(as(ctx, carol), &rulesv1.ApproveBundleRequest{Tenant: "RZY", ContentHash: loaded.GetRef().GetContentHash()})
	require.NoError(t, err)
	versions, err := c.ListBundleVersions(ctx, &rulesv1.ListBundleVersionsRequest{Tenant: "RZY"})
	require.NoError(t, err)
	require.Len(t, versions.GetVersions(), 2)
	require.Equal(t, "2026.11.29-2", versions.GetVersions()[0].GetRef().GetVersion())
	require.True(t, versions.GetVersions()[0].GetActive())
	require.False(t, versions.GetVersions()[1].GetActive())

	// Evaluate now uses the new version.
	ev, err := c.Evaluate(ctx, &rulesv1.EvaluateRequest{Tenant: "RZY", Details: details(eventsv1.Category_CATEGORY_CRITICAL, monday), At: timestamppb.New(monday)})
	require.NoError(t, err)
	require.Equal(t, "2026.11.29-2", ev.GetRouted().GetPolicy().GetRef().GetVersion())
	require.Equal(t, 5*time.Minute, ev.GetRouted().GetPolicy().GetSteps()[0].GetTimeout().AsDuration())
	_, err = c.Evaluate(ctx, &rulesv1.EvaluateRequest{Tenant: "RXX"})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.False(t, errors.Is(err, context.Canceled))
}

// copyDemo writes the embedded demo bundles into a directory.
func copyDemo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(rules.DemoBundles(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, p), 0o755)
		}
		b, err := fs.ReadFile(rules.DemoBundles(), p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	require.NoError(t, err)
	return dir
}

func TestBundleDirectoryReloadAndApprovedBundleSurviveRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := e.cfg
	cfg.BundleFS = nil
	cfg.BundleDir = copyDemo(t)
	addr, stop := e.start(t, cfg)
	c := client(t, addr)

	// Given a broken edit of RZZ's bundle on disk: the running bundle stays.
	before, err := c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZZ"})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(cfg.BundleDir, "RZZ", "broken.yaml"), []byte("rules: [\n"), 0o644))
	require.Eventually(t, func() bool { return strings.Contains(e.logs.String(), `"file":"RZZ/broken.yaml"`) }, 10*time.Second, 20*time.Millisecond)
	now, err := c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZZ"})
	require.NoError(t, err)
	require.Equal(t, before.GetRef().GetContentHash(), now.GetRef().GetContentHash())
	require.NoError(t, os.Remove(filepath.Join(cfg.BundleDir, "RZZ", "broken.yaml")))

	// When a new RZY version is proposed through gRPC (under any file name)
	// and approved by a second person.
	active, err := c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZY"})
	require.NoError(t, err)
	content := strings.Replace(string(active.GetFiles()[0].GetContent()), `version: "2026.11.29-1"`, `version: "2026.11.29-3"`, 1)
	loaded, err := c.LoadBundle(as(ctx, alice), &rulesv1.LoadBundleRequest{Files: []*rulesv1.BundleFile{{Name: "upload.yaml", Content: []byte(content)}}})
	require.NoError(t, err)
	require.Equal(t, "2026.11.29-3", loaded.GetRef().GetVersion())
	_, err = c.ApproveBundle(as(ctx, carol), &rulesv1.ApproveBundleRequest{Tenant: "RZY", ContentHash: loaded.GetRef().GetContentHash()})
	require.NoError(t, err)

	// Then it is still in force after a restart (the policy-bundle topic
	// holds it; the directory's older bundle does not win).
	stop()
	addr, _ = e.start(t, cfg)
	after, err := client(t, addr).GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZY"})
	require.NoError(t, err)
	require.Equal(t, "2026.11.29-3", after.GetRef().GetVersion())
	require.Equal(t, loaded.GetRef().GetContentHash(), after.GetRef().GetContentHash())
}

func TestReplicaThatTakesOverAPartitionDoesNotRouteTwice(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Millisecond)
	// Given two replicas in one consumer group.
	logsA, logsB := &syncBuffer{}, &syncBuffer{}
	_, stopA := e.startLogging(t, e.cfg, logsA)
	_, stopB := e.startLogging(t, e.cfg, logsB)
	// Both have joined: a replica still joining would take a partition from
	// the other in a rebalance, possibly in the middle of the handler that
	// routes the alert (which then leaves the record to the new owner).
	testinfra.WaitGroupStable(t, e.cfg.Log.Brokers, e.cfg.GroupID, e.cfg.Log.EventsTopic, 2, 90*time.Second)

	// When an alert is raised, one of them routes it.
	a := eventlog.ID("RZZ", "ACC-6", "F-6")
	raised := cause(a, "raised-6", "RZZ", at, &eventsv1.AlertRaised{Details: details(eventsv1.Category_CATEGORY_CRITICAL, at)})
	require.NoError(t, e.w.Append(ctx, raised))
	e.waitRouted(t, a, 1)
	// The replica logs the routing after its AlertRouted is on the log: wait
	// for the line, then the replica that wrote it is the owner.
	routedLine := `"msg":"alert routed","service":"rules","alert_id":"` + a
	var owner, rest *syncBuffer
	var stopOwner func()
	require.Eventually(t, func() bool {
		switch {
		case strings.Contains(logsA.String(), routedLine):
			owner, stopOwner, rest = logsA, stopA, logsB
		case strings.Contains(logsB.String(), routedLine):
			owner, stopOwner, rest = logsB, stopB, logsA
		}
		return owner != nil
	}, 90*time.Second, 20*time.Millisecond, "no replica logged the routing of alert %s", a)

	// And that replica stops, so the other takes the partition over, and the
	// AlertRaised is delivered again (a producer retry), then amended: the
	// amendment names another referrer (a clinical change, so it is routed;
	// one that changed nothing clinically would not be).
	stopOwner()
	require.NoError(t, e.w.Append(ctx, raised))
	amended := details(eventsv1.Category_CATEGORY_URGENT, at)
	amended.Referrer = &eventsv1.Clinician{Id: "7100002", DisplayName: "Dr Ben Brown", Team: "ED"}
	require.NoError(t, e.w.Append(ctx, cause(a, "amended-6", "RZZ", at, &eventsv1.AlertAmended{Details: amended})))

	// Then the other replica routes only the amendment, keeping CRITICAL: it
	// caught up on what the first one had consumed.
	got := e.waitRouted(t, a, 2)
	// Every event handled (and its AlertRouted appended): a third routing
	// would be on the log now.
	testinfra.WaitCommitted(t, e.cfg.Log.Brokers, e.cfg.Log.EventsTopic, 30*time.Second, e.cfg.GroupID)
	require.Len(t, e.routedOf(t, a), 2)
	require.Equal(t, "raised-6", got[0].GetCausationId())
	require.Equal(t, "amended-6", got[1].GetCausationId())
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, got[1].GetAlertRouted().GetCategory())
	require.Contains(t, rest.String(), "caught up on events consumed by another replica")
}

// allRouted reads the whole topic and counts the AlertRouted events by the
// id of their cause.
func (e *env) allRouted(t *testing.T) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]int{}
	err := eventlog.ReadTopic(ctx, e.cfg.Log, e.cfg.Log.EventsTopic, func(_, value []byte, _ int, _ int64) error {
		var ev eventsv1.Event
		require.NoError(t, proto.Unmarshal(value, &ev))
		if ev.GetAlertRouted() != nil {
			out[ev.GetCausationId()]++
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// A backlog is consumed in runs (several routings per append). The service
// is stopped while it works through it, in the middle of a run or between
// two, and started again: every alert ends up routed exactly once.
func TestBacklogRoutedInRunsConvergesAfterAStopMidRun(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Millisecond)
	const n = 150
	var causes []*eventsv1.Event
	for i := range n {
		id := eventlog.ID("RZZ", fmt.Sprintf("ACC-R%d", i), "F-1")
		causes = append(causes, cause(id, fmt.Sprintf("raised-r%d", i), "RZZ", at, &eventsv1.AlertRaised{Details: details(eventsv1.Category_CATEGORY_URGENT, at)}))
	}
	// Given a backlog of alerts (one produce request: runs in every partition).
	require.NoError(t, e.w.Append(ctx, causes...))

	// When the service starts and is stopped as soon as routings appear.
	_, stop := e.start(t, e.cfg)
	require.Eventually(t, func() bool { return len(e.allRouted(t)) > 0 }, 90*time.Second, 5*time.Millisecond)
	stop()
	first := len(e.allRouted(t))

	// And started again in the same group.
	e.start(t, e.cfg)
	require.Eventually(t, func() bool { return len(e.allRouted(t)) == n }, 90*time.Second, 100*time.Millisecond,
		"routed %d of %d alerts (%d before the stop)", len(e.allRouted(t)), n, first)
	testinfra.WaitCommitted(t, e.cfg.Log.Brokers, e.cfg.Log.EventsTopic, 30*time.Second, e.cfg.GroupID)

	// Then each alert has exactly one routing.
	for c, k := range e.allRouted(t) {
		require.Equal(t, 1, k, "cause %s routed %d times", c, k)
	}
}
