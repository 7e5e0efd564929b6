package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
)

// Services are Herald's four services, in start order.
var Services = []string{"intake", "rules", "acknowledgement", "notification"}

// Addrs are the listen addresses the harness chose for the services.
type Addrs struct {
	IntakeGRPC, MLLP, FHIR, RulesGRPC, AckGRPC, AckHTTP, NotificationGRPC, Receipts string
}

// System is Herald running as four processes against the real Kafka and
// Redis, with its own topics, consumer groups and Redis database, so suites
// do not see each other's alerts.
type System struct {
	Procs     map[string]*Proc
	Addrs     Addrs
	Log       eventlog.Config
	Redis     *redis.Client
	SMTP      *SMTPSink
	Webhook   *WebhookSink
	Traces    *TraceCollector
	BundleDir string
	Secret    string
	// RefKey is the reference key acknowledgement and notification share.
	RefKey string
	// Groups are the consumer groups of rules, acknowledgement and
	// notification.
	Groups             []string
	notificationPrefix string

	Intake intakev1.IntakeServiceClient
	Ack    ackv1.AcknowledgementServiceClient
	conns  []*grpc.ClientConn
}

// Bundle is a rules bundle template: {{SMTP}}-free YAML whose {{WEBHOOK}}
// is replaced by the webhook sink's URL.
type Bundle struct {
	Tenant string
	YAML   string
}

// Options change how StartSystemWith runs the services.
type Options struct {
	// Env holds extra environment settings per service ("NAME=value"),
	// applied after the harness's own, so they win.
	Env map[string][]string
}

// StartSystem starts the four services built by Build with env pointing at
// fresh topics, a private Redis database and the protocol sinks, and waits
// until each is healthy.
func StartSystem(t testing.TB, bins map[string]string, bundles []Bundle) *System {
	t.Helper()
	return StartSystemWith(t, bins, bundles, Options{})
}

// StartSystemWith is StartSystem with options.
func StartSystemWith(t testing.TB, bins map[string]string, bundles []Bundle, opts Options) *System {
	t.Helper()
	s := &System{
		Procs:   map[string]*Proc{},
		Redis:   testinfra.NewRedis(t),
		SMTP:    NewSMTPSink(t),
		Webhook: NewWebhookSink(t),
		Traces:  NewTraceCollector(t),
		Secret:  strings.Repeat("e2e-ack-link-secret-", 3),
		RefKey:  strings.Repeat("e2e-reference-key-", 3),
	}
	s.Log = eventlog.DefaultConfig()
	s.Log.Brokers = testinfra.KafkaBrokers(t)
	s.Log.Partitions = 4
	s.Log.EventsTopic = testinfra.UniqueName("e2e-events")
	s.Log.DLQTopic = testinfra.UniqueName("e2e-dlq")
	s.Log.StateTopic = testinfra.UniqueName("e2e-state")
	s.Log.SessionTimeout = 6 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := eventlog.EnsureTopics(ctx, s.Log, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := &kafka.Client{Addr: kafka.TCP(s.Log.Brokers...), Transport: &kafka.Transport{}}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{s.Log.EventsTopic, s.Log.DLQTopic, s.Log.StateTopic}})
	})

	s.BundleDir = t.TempDir()
	for _, b := range bundles {
		dir := filepath.Join(s.BundleDir, b.Tenant)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		yaml := strings.ReplaceAll(b.YAML, "{{WEBHOOK}}", s.Webhook.URL+"/hook")
		if err := os.WriteFile(filepath.Join(dir, "bundle.yaml"), []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	var tenants []string
	for _, b := range bundles {
		tenants = append(tenants, b.Tenant)
	}
	tenantsFile := WriteTenants(t, tenants...)

	free := func() string { return testinfra.FreePort(t) }
	s.Addrs = Addrs{
		IntakeGRPC: free(), MLLP: free(), FHIR: free(), RulesGRPC: free(),
		AckGRPC: free(), AckHTTP: free(), NotificationGRPC: free(), Receipts: free(),
	}
	suffix := testinfra.UniqueName("g")
	s.Groups = []string{"rules-" + suffix, "ack-" + suffix, "notification-" + suffix}
	s.notificationPrefix = suffix + ":notification"
	db := fmt.Sprint(s.Redis.Options().DB)
	common := []string{
		"HERALD_KAFKA_BROKERS=" + strings.Join(s.Log.Brokers, ","),
		"HERALD_KAFKA_EVENTS_TOPIC=" + s.Log.EventsTopic,
		"HERALD_KAFKA_DLQ_TOPIC=" + s.Log.DLQTopic,
		"HERALD_KAFKA_STATE_TOPIC=" + s.Log.StateTopic,
		"HERALD_KAFKA_PARTITIONS=4",
		"HERALD_KAFKA_SESSION_TIMEOUT=6s",
		"HERALD_REDIS_ADDR=" + s.Redis.Options().Addr,
		"HERALD_REDIS_DB=" + db,
		"HERALD_OTLP_ENDPOINT=" + s.Traces.Addr,
		"HERALD_METRICS_ADDR=",
		"HERALD_LOG_LEVEL=debug",
	}
	env := map[string][]string{
		"intake": {
			"HERALD_GRPC_ADDR=" + s.Addrs.IntakeGRPC, "HERALD_MLLP_ADDR=" + s.Addrs.MLLP, "HERALD_FHIR_ADDR=" + s.Addrs.FHIR,
			"HERALD_OUTCOME_PREFIX=" + suffix + ":intake:", "HERALD_TENANTS_FILE=" + tenantsFile,
		},
		"rules": {
			"HERALD_GRPC_ADDR=" + s.Addrs.RulesGRPC, "HERALD_GROUP_ID=rules-" + suffix,
			"HERALD_BUNDLE_DIR=" + s.BundleDir, "HERALD_BUNDLE_POLL_INTERVAL=500ms",
		},
		"acknowledgement": {
			"HERALD_GRPC_ADDR=" + s.Addrs.AckGRPC, "HERALD_HTTP_ADDR=" + s.Addrs.AckHTTP, "HERALD_PUBLIC_URL=http://" + s.Addrs.AckHTTP,
			"HERALD_GROUP_ID=ack-" + suffix, "HERALD_REDIS_NAMESPACE=" + suffix,
			"HERALD_ACK_LINK_SECRET=" + s.Secret, "HERALD_REFERENCE_KEY=" + s.RefKey, "HERALD_DEV_IDENTITY=link-recipient",
			"HERALD_TIMER_LEASE=5s",
		},
		"notification": {
			"HERALD_GRPC_ADDR=" + s.Addrs.NotificationGRPC, "HERALD_RECEIPTS_ADDR=" + s.Addrs.Receipts,
			"HERALD_GROUP_ID=notification-" + suffix, "HERALD_REDIS_PREFIX=" + suffix + ":notification",
			"HERALD_RULES_ADDR=" + s.Addrs.RulesGRPC, "HERALD_ACK_BASE_URL=http://" + s.Addrs.AckHTTP,
			"HERALD_ACK_LINK_SECRET=" + s.Secret, "HERALD_REFERENCE_KEY=" + s.RefKey, "HERALD_SMTP_ADDR=" + s.SMTP.Addr, "HERALD_SMTP_STARTTLS=false",
			"HERALD_WEBHOOK_SECRET=e2e-webhook-secret", "HERALD_RETRY_INITIAL=200ms", "HERALD_RETRY_MAX=2s",
			"HERALD_SEND_TIMEOUT=5s", "HERALD_RATE_LIMIT_MAX=0",
		},
	}
	health := map[string]string{
		"intake": s.Addrs.IntakeGRPC, "rules": s.Addrs.RulesGRPC,
		"acknowledgement": s.Addrs.AckGRPC, "notification": s.Addrs.NotificationGRPC,
	}
	for _, name := range Services {
		p := Start(t, name, bins[name], append(append(append([]string{}, common...), env[name]...), opts.Env[name]...))
		s.Procs[name] = p
		WaitHealthy(t, health[name], 60*time.Second, p)
	}
	tel := telemetry.Nop("e2e")
	for _, target := range []string{s.Addrs.IntakeGRPC, s.Addrs.AckGRPC} {
		conn, err := grpcserver.Dial(context.Background(), target, tel)
		if err != nil {
			t.Fatal(err)
		}
		s.conns = append(s.conns, conn)
	}
	s.Intake = intakev1.NewIntakeServiceClient(s.conns[0])
	s.Ack = ackv1.NewAcknowledgementServiceClient(s.conns[1])
	t.Cleanup(func() {
		for _, c := range s.conns {
			_ = c.Close()
		}
	})
	return s
}

// WriteTenants writes intake's tenants file for the synthetic test trusts
// (their HL7 sending facility is their ODS code; the report phrases
// "CRITICAL ALERT" and "URGENT ALERT" flag a finding) and returns its path.
// Intake's defaults know no trust.
func WriteTenants(t testing.TB, ods ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("tenants:\n")
	for _, o := range ods {
		fmt.Fprintf(&b, "  - ods: %s\n    trigger_phrases: [\"CRITICAL ALERT\", \"URGENT ALERT\"]\n", o)
	}
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Restart kill -9s a service and starts it again, waiting until healthy.
func (s *System) Restart(t testing.TB, name string) {
	t.Helper()
	p := s.Procs[name]
	p.Kill9()
	p.Restart(t)
	addr := map[string]string{"intake": s.Addrs.IntakeGRPC, "rules": s.Addrs.RulesGRPC, "acknowledgement": s.Addrs.AckGRPC, "notification": s.Addrs.NotificationGRPC}[name]
	WaitHealthy(t, addr, 60*time.Second, p)
}

// Logs returns every service's output so far.
func (s *System) Logs() map[string][]byte {
	out := map[string][]byte{}
	for n, p := range s.Procs {
		out[n] = p.Logs()
	}
	return out
}

// WaitQuiet waits until Herald has done everything the log asks of it so
// far: every service's consumer group has committed every record on the
// events topic (each handler returned, so what it appended is on the log
// too: the wait repeats until no group is behind the log's end), and the
// notification service has no job scheduled or in hand. From then on
// nothing is sent or appended until a new event or a timer comes. It is
// how a suite counts messages without sleeping first.
func (s *System) WaitQuiet(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	ctx := context.Background()
	for {
		before := s.logEnd(t)
		testinfra.WaitCommitted(t, s.Log.Brokers, s.Log.EventsTopic, time.Until(deadline), s.Groups...)
		jobs := int64(0)
		for _, key := range []string{s.notificationPrefix + ":due", s.notificationPrefix + ":due:critical"} {
			n, err := s.Redis.ZCard(ctx, key).Result()
			if err != nil {
				t.Fatalf("notification jobs in %s: %v", key, err)
			}
			jobs += n
		}
		if jobs == 0 && s.logEnd(t) == before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Herald not quiet within %v: %d notification jobs left", within, jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logEnd is the number of records on the events topic.
func (s *System) logEnd(t testing.TB) int64 {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(s.Log.Brokers...), Transport: &kafka.Transport{}}
	reqs := make([]kafka.OffsetRequest, s.Log.Partitions)
	for p := range s.Log.Partitions {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	res, err := c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{s.Log.EventsTopic: reqs}})
	if err != nil {
		t.Fatalf("end of %s: %v", s.Log.EventsTopic, err)
	}
	var n int64
	for _, p := range res.Topics[s.Log.EventsTopic] {
		n += p.LastOffset
	}
	return n
}

// Events returns the alert's events, in log order.
func (s *System) Events(t testing.TB, alertID string) []*eventsv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*eventsv1.Event
	err := eventlog.ReadTopic(ctx, s.Log, s.Log.EventsTopic, func(key, value []byte, _ int, _ int64) error {
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
	if err != nil {
		t.Fatalf("read the events of alert %s: %v", alertID, err)
	}
	return out
}

// Ref is the reference people see for an alert (platform/alertref under
// the system's reference key): in every message and on the acknowledge page.
func (s *System) Ref(alertID string) string {
	k, err := alertref.New([]byte(s.RefKey))
	if err != nil {
		panic(err) // RefKey is a constant of the harness, long enough
	}
	return k.Ref(alertID)
}
