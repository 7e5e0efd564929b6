package acknowledgement_test

import (
	"bytes"
	"context"
	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/eventtype"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/authn/authntest"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Synthetic patient data: must never appear in logs, pages or API answers.
const (
	patientNHS    = "9990000018"
	patientFamily = "Quixotebury"
	patientGiven  = "Wilhelmina"
	patientDOB    = "1931-02-03"
	reportText    = "Large left pneumothorax with mediastinal shift"
	referenceKey  = "acknowledgement-test-reference-key-0123456789"
	sessionKey    = "acknowledgement-test-session-key-0123456789"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type env struct {
	t      testing.TB
	idp    *authntest.Issuer
	cfg    acknowledgement.Config
	rdb    *redis.Client
	logs   *lockedBuffer
	writer *eventlog.Writer
	clock  clock.Clock
	tel    *telemetry.Telemetry
	// authn is the authentication stand-in of the replicas (nil: none).
	authn grpcserver.Option
	// keys: acknowledge links are verified with the public key; tests
	// sign with the private one, as the notification service does.
	keys acklink.Generated
}

func newEnv(t testing.TB) *env {
	t.Helper()
	rdb := testinfra.NewRedis(t)
	e := &env{t: t, rdb: rdb, logs: &lockedBuffer{}, clock: clock.Real{}, idp: authntest.NewIssuer(t)}
	cfg := acknowledgement.DefaultConfig()
	cfg.Authn.Issuer = e.idp.URL
	cfg.Security = servicemain.DevelopmentInsecure()
	cfg.Log.Brokers = testinfra.KafkaBrokers(t)
	cfg.Log.EventsTopic = testinfra.NewTopic(t, "ack-events", 3)
	cfg.Log.DLQTopic = testinfra.NewTopic(t, "ack-dlq", 1)
	cfg.Log.StateTopic = testinfra.NewTopic(t, "ack-state", 3)
	cfg.Log.Partitions = 3
	cfg.Log.SessionTimeout = 6 * time.Second
	cfg.GroupID = testinfra.UniqueName("acknowledgement")
	cfg.GRPC.Addr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Redis.Addr = rdb.Options().Addr
	cfg.Redis.DB = rdb.Options().DB
	cfg.RedisNamespace = testinfra.UniqueName("ack")
	keys, err := acklink.GenerateFiles(t.TempDir())
	require.NoError(t, err)
	e.keys = keys
	cfg.AckLinkPublicKeys, cfg.ReferenceKey, cfg.SessionKey = keys.PublicKeyFile, referenceKey, sessionKey
	cfg.DevIdentity = "link-recipient"
	cfg.TimerMaxSleep = 200 * time.Millisecond
	cfg.EpochEvery = 200 * time.Millisecond
	cfg.TimerLease = 5 * time.Second
	e.cfg = cfg
	e.writer = eventlog.NewWriter(cfg.Log, "test", telemetry.Nop("test"))
	t.Cleanup(func() { _ = e.writer.Close() })
	return e
}

// as calls as person (subject and Herald id) with roles ("TRUST:role";
// default a clinician of RZZ), with an access token of the test issuer.
func (e *env) as(person string, roles ...string) grpc.CallOption {
	if len(roles) == 0 {
		roles = []string{"RZZ:clinician"}
	}
	return grpc.PerRPCCredentials(authn.Bearer(authn.StaticToken(e.idp.Token(e.t, person, roles, nil))))
}

// asWith calls as a clinician of RZZ with a token whose claims change
// edits.
func (e *env) asWith(person string, change func(*authntestClaims)) grpc.CallOption {
	return grpc.PerRPCCredentials(authn.Bearer(authn.StaticToken(e.idp.Token(e.t, person, []string{"RZZ:clinician"}, change))))
}

type authntestClaims = authntest.Claims

func numericDate(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }

type instance struct {
	svc    *acknowledgement.Service
	cancel context.CancelFunc
	stop   func()
	client ackv1.AcknowledgementServiceClient
}

// start runs a replica; stop cancels it and waits for it to finish.
func (e *env) start(name string, hooks app.Hooks) *instance {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := e.cfg
	cfg.Replica = name
	tel := e.tel
	if tel == nil {
		tel = telemetry.Nop(acknowledgement.ServiceName)
	}
	svc, err := acknowledgement.New(ctx, cfg, acknowledgement.Deps{Logger: logging.New(e.logs, -4, "acknowledgement"),
		Clock: e.clock, Telemetry: tel, Hooks: hooks, Authentication: e.authn})
	require.NoError(e.t, err)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(e.t, err)
			case <-time.After(30 * time.Second):
				e.t.Errorf("replica %s did not stop", name)
			}
		})
	}
	e.t.Cleanup(stop)
	conn, err := grpc.NewClient(svc.Addrs()["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = conn.Close() })
	return &instance{svc: svc, cancel: cancel, stop: stop, client: ackv1.NewAcknowledgementServiceClient(conn)}
}

func (e *env) append(ctx context.Context, evs ...*eventsv1.Event) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(e.t, e.writer.Append(ctx, evs...))
}

// events returns the events of an alert in log order.
func (e *env) events(alertID string) []*eventsv1.Event {
	e.t.Helper()
	var out []*eventsv1.Event
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := eventlog.ReadTopic(ctx, e.cfg.Log, e.cfg.Log.EventsTopic, func(key, value []byte, _ int, _ int64) error {
		if string(key) != alertID {
			return nil
		}
		var ev eventsv1.Event
		if err := proto.Unmarshal(value, &ev); err != nil {
			return err
		}
		out = append(out, &ev)
		return nil
	})
	require.NoError(e.t, err)
	return out
}

// allEvents returns every event in the log, by alert id, in log order.
func (e *env) allEvents() map[string][]*eventsv1.Event {
	e.t.Helper()
	out := map[string][]*eventsv1.Event{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := eventlog.ReadTopic(ctx, e.cfg.Log, e.cfg.Log.EventsTopic, func(key, value []byte, _ int, _ int64) error {
		var ev eventsv1.Event
		if err := proto.Unmarshal(value, &ev); err != nil {
			return err
		}
		out[string(key)] = append(out[string(key)], &ev)
		return nil
	})
	require.NoError(e.t, err)
	return out
}

func (e *env) waitState(c ackv1.AcknowledgementServiceClient, alertID string, want ackv1.State, within time.Duration) *ackv1.GetAlertResponse {
	e.t.Helper()
	var got *ackv1.GetAlertResponse
	require.Eventually(e.t, func() bool {
		r, err := c.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: alertID})
		if err != nil {
			return false
		}
		got = r
		return r.GetState().GetState() == want
	}, within, 50*time.Millisecond, "alert %s: waiting for %s, last %v", alertID, want, got.GetState().GetState())
	return got
}

// ---- events ---------------------------------------------------------------

func raisedEvent(alertID string) *eventsv1.Event {
	return &eventsv1.Event{EventId: eventlog.ID(alertID, "raised"), AlertId: alertID, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: &eventsv1.AlertDetails{
			Accession: "ACC1", FindingCode: "F1", ReportText: reportText,
			Patient:  &eventsv1.Patient{NhsNumber: patientNHS, FamilyName: patientFamily, GivenName: patientGiven, BirthDate: patientDOB},
			Referrer: &eventsv1.Clinician{Id: "G123", DisplayName: "Dr Referrer", Team: "T1"},
		}}}}
}

// routedEvent routes with a ladder of steps of the given timeouts (the
// first step repeats once) and clocks far away unless given.
func routedEvent(alertID string, clocks *eventsv1.Clocks, timeouts ...time.Duration) *eventsv1.Event {
	var steps []*eventsv1.EscalationStep
	for i, d := range timeouts {
		s := &eventsv1.EscalationStep{Index: uint32(i), Timeout: durationpb.New(d), AckMode: eventsv1.AckMode_ACK_MODE_ANY_ONE,
			Targets: []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER}}}
		if i == 0 {
			s.Repeats = 1
		}
		steps = append(steps, s)
	}
	if clocks == nil {
		clocks = &eventsv1.Clocks{AcknowledgeBy: timestamppb.New(time.Now().Add(time.Hour))}
	}
	return &eventsv1.Event{EventId: eventlog.ID(alertID, "routed"), AlertId: alertID, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{
			Category: eventsv1.Category_CATEGORY_CRITICAL,
			Clocks:   clocks,
			Policy:   &eventsv1.EscalationPolicy{Ref: &eventsv1.PolicyRef{PolicyId: "rzz", Version: "1"}, FailsafeQueue: "rzz-fs", Steps: steps},
		}}}
}

// routedOnceEvent is routedEvent without step 0's repeat: the first step
// timer escalates to step 1 (ESCALATION_REASON_TIMEOUT), and the next
// deadline is step 1's timeout. A test about one escalation gives step 1 a
// long timeout, so that it sees exactly one however slow the machine is
// (with routedEvent the repeat's deadline comes one step timeout after the
// first escalation, and a loaded machine reaches it before the test looks).
func routedOnceEvent(alertID string, timeouts ...time.Duration) *eventsv1.Event {
	ev := routedEvent(alertID, nil, timeouts...)
	ev.GetAlertRouted().GetPolicy().GetSteps()[0].Repeats = 0
	return ev
}

func newAlertID(name string) string {
	return eventlog.ID("RZZ", name, time.Now().Format(time.RFC3339Nano))
}

// decided returns the ids of the events the service decided (escalations,
// fail-safe, breaches) in log order, and how many records each had.
func decided(events []*eventsv1.Event) (ids []string, records map[string]int, kinds map[string]string) {
	records, kinds = map[string]int{}, map[string]string{}
	for _, ev := range events {
		switch ev.GetPayload().(type) {
		case *eventsv1.Event_AlertEscalated, *eventsv1.Event_FailsafeQueued, *eventsv1.Event_SlaBreached:
		default:
			continue
		}
		if records[ev.GetEventId()] == 0 {
			ids = append(ids, ev.GetEventId())
			kinds[ev.GetEventId()] = describe(ev)
		}
		records[ev.GetEventId()]++
	}
	return ids, records, kinds
}

func describe(ev *eventsv1.Event) string {
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertEscalated:
		x := p.AlertEscalated
		return eventtype.Of(ev) + " " + x.GetReason().String() + " " + string(rune('0'+x.GetToStep())) + "/" + string(rune('0'+x.GetRepeat()))
	case *eventsv1.Event_SlaBreached:
		return eventtype.Of(ev) + " " + p.SlaBreached.GetClock().String()
	}
	return eventtype.Of(ev)
}

func kindsOf(ids []string, kinds map[string]string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = kinds[id]
	}
	return out
}

var fullLadder = []string{
	"AlertEscalated ESCALATION_REASON_REPEAT 0/1",
	"AlertEscalated ESCALATION_REASON_TIMEOUT 1/0",
	"AlertEscalated ESCALATION_REASON_TIMEOUT 2/0",
	"FailsafeQueued",
}

func testinfraTopic(tb testing.TB, prefix string, partitions int) string {
	tb.Helper()
	return testinfra.NewTopic(tb, prefix, partitions)
}
