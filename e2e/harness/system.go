package harness

import (
	"context"
	"fmt"
	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/devca"
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
	"github.com/herald-health/herald/platform/authz/devbindings"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/redisconn"
	"github.com/herald-health/herald/platform/sealing"
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
	// BundleTopic is rules' policy-bundle topic (proposals, approvals).
	BundleTopic string
	Secret      string
	// AckLinks is the system's throwaway acknowledge-link key pair:
	// notification signs with the private key, acknowledgement verifies
	// with the public one.
	AckLinks acklink.Generated
	// TLS is the system's development CA: every gRPC hop, MLLP and FHIR
	// are mutual TLS with it.
	TLS *TLS
	// EventKeys are the system's throwaway event signing keys (one per
	// service) and the key set every service verifies against.
	EventKeys eventsign.Generated
	// RefKey is the reference key acknowledgement and notification share.
	RefKey string
	// IDP is the identity provider people sign in with (Ory Hydra as a
	// process): every service verifies access tokens against it.
	IDP *IDP
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
	// SecureInfra runs the services in the production profile on the
	// test infrastructure's secured listeners: Kafka SASL_SSL and the TLS
	// Redis, each service as its own principal and ACL user (deps.sh), so
	// every hop is encrypted and authenticated. Topic, group and key names
	// then carry the production prefixes the ACLs grant. The harness
	// itself observes through the plaintext Kafka listener and the TLS
	// Redis's admin user.
	SecureInfra bool
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
		SMTP:    NewSMTPSink(t),
		Webhook: NewWebhookSink(t),
		Traces:  NewTraceCollector(t),
		TLS:     NewTLS(t),
		RefKey:  strings.Repeat("e2e-reference-key-", 3),
	}
	s.Log = eventlog.DefaultConfig()
	s.Log.Brokers = testinfra.KafkaBrokers(t)
	s.Log.Partitions = 4
	s.Log.EventsTopic = testinfra.UniqueName("e2e-events")
	s.Log.DLQTopic = testinfra.UniqueName("e2e-dlq")
	s.Log.StateTopic = testinfra.UniqueName("e2e-state")
	s.BundleTopic = testinfra.UniqueName("e2e-bundles")
	if opts.SecureInfra {
		// The ACLs grant the production names as prefixes.
		s.Log.EventsTopic = testinfra.UniqueName("herald.alert-events.v1")
		s.Log.DLQTopic = testinfra.UniqueName("herald.alert-events.dlq.v1")
		s.Log.StateTopic = testinfra.UniqueName("herald.alert-state.v1")
		s.BundleTopic = testinfra.UniqueName("herald.policy-bundles.v1")
		s.Redis = secureRedisAdmin(t)
	} else {
		s.Redis = testinfra.NewRedis(t)
	}
	s.Log.SessionTimeout = 6 * time.Second
	// Every service signs what it appends and verifies what it reads
	// (forged events, #20 item 7), with keys made now like the CA.
	keys, err := eventsign.GenerateFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.EventKeys = keys
	s.Log.VerifyKeysFile = keys.KeySetFile
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := eventlog.EnsureTopics(ctx, s.Log, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := &kafka.Client{Addr: kafka.TCP(s.Log.Brokers...), Transport: &kafka.Transport{}}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{s.Log.EventsTopic, s.Log.DLQTopic, s.Log.StateTopic, s.BundleTopic}})
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
		if opts.SecureInfra {
			// In the production profile a bundle is in force only once a
			// second person approved its content: record the seed bundle
			// as proposed and approved, as two people would through the API.
			SeedApprovedBundle(t, s.SignedAs(eventsign.ServiceRules), s.BundleTopic, b.Tenant, map[string][]byte{b.Tenant + "/bundle.yaml": []byte(yaml)})
		}
	}

	var tenants []string
	for _, b := range bundles {
		tenants = append(tenants, b.Tenant)
	}
	tenantsFile := WriteTenants(t, tenants...)
	// The harness's certificate is the sender of every trust's messages.
	bindingsFile := WriteSenderBindings(t, devca.SPIFFEID(ClientIdentity), tenants...)
	patientKeys := WritePatientKeys(t, tenants...)

	free := func() string { return testinfra.FreePort(t) }
	s.Addrs = Addrs{
		IntakeGRPC: free(), MLLP: free(), FHIR: free(), RulesGRPC: free(),
		AckGRPC: free(), AckHTTP: free(), NotificationGRPC: free(), Receipts: free(),
	}
	suffix := testinfra.UniqueName("g")
	s.Groups = []string{"rules-" + suffix, "acknowledgement-" + suffix, "notification-" + suffix}
	s.notificationPrefix = suffix + ":notification"
	intakePrefix, ackNamespace := suffix+":intake:", suffix
	if opts.SecureInfra {
		// The Redis ACL users reach only their production key prefixes.
		s.notificationPrefix = "herald:notification:" + suffix
		intakePrefix, ackNamespace = "herald:intake:"+suffix+":", "herald"
	}
	db := fmt.Sprint(s.Redis.Options().DB)
	// Secrets reach the services as files, as a Kubernetes Secret volume
	// gives them.
	s.IDP = StartIDP(t, "http://"+s.Addrs.AckHTTP)
	s.AckLinks = NewAckLinkKeys(t)
	sessionKeyFile := WriteSecret(t, strings.Repeat("e2e-session-key-", 3))
	refKeyFile := WriteSecret(t, s.RefKey)
	// Authorization (docs/authorization.md): the development role
	// bindings, whose e2e identity (the harness's and heraldctl's
	// certificate) is a sending system and an operator: it raises and
	// reads, and a command on an alert or a policy is made for a person
	// signed in at the provider (SignIn). The production profile gets the
	// people only (it refuses the tools' bindings).
	bindings, err := devbindings.Write(t.TempDir(), !opts.SecureInfra)
	if err != nil {
		t.Fatal(err)
	}
	common := []string{
		"HERALD_ROLE_BINDINGS_FILE=" + bindings,
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
		"HERALD_OIDC_ISSUER=" + s.IDP.Issuer,
		"HERALD_EVENT_VERIFY_KEYS_FILE=" + keys.KeySetFile,
	}
	env := map[string][]string{
		"intake": {
			"HERALD_GRPC_ADDR=" + s.Addrs.IntakeGRPC, "HERALD_MLLP_ADDR=" + s.Addrs.MLLP, "HERALD_FHIR_ADDR=" + s.Addrs.FHIR,
			"HERALD_OUTCOME_PREFIX=" + intakePrefix, "HERALD_TENANTS_FILE=" + tenantsFile,
			"HERALD_SENDER_BINDINGS_FILE=" + bindingsFile,
			patientKeys[0], patientKeys[1],
		},
		"rules": {
			"HERALD_GRPC_ADDR=" + s.Addrs.RulesGRPC, "HERALD_GROUP_ID=rules-" + suffix,
			"HERALD_BUNDLE_DIR=" + s.BundleDir, "HERALD_BUNDLE_POLL_INTERVAL=500ms", "HERALD_BUNDLE_TOPIC=" + s.BundleTopic,
		},
		"acknowledgement": {
			"HERALD_GRPC_ADDR=" + s.Addrs.AckGRPC, "HERALD_HTTP_ADDR=" + s.Addrs.AckHTTP, "HERALD_PUBLIC_URL=http://" + s.Addrs.AckHTTP,
			"HERALD_GROUP_ID=acknowledgement-" + suffix, "HERALD_REDIS_NAMESPACE=" + ackNamespace,
			"HERALD_ACK_LINK_PUBLIC_KEYS_FILE=" + s.AckLinks.PublicKeyFile, "HERALD_SESSION_KEY_FILE=" + sessionKeyFile,
			"HERALD_REFERENCE_KEY_FILE=" + refKeyFile, "HERALD_DEV_IDENTITY=link-recipient",
			"HERALD_OIDC_CLIENT_ID=" + PageClient, "HERALD_OIDC_CLIENT_SECRET_FILE=" + WriteSecret(t, pageSecret), "HERALD_OIDC_PERSON_CLAIM=herald_person",
			"HERALD_TIMER_LEASE=5s",
		},
		"notification": {
			"HERALD_GRPC_ADDR=" + s.Addrs.NotificationGRPC, "HERALD_RECEIPTS_ADDR=" + s.Addrs.Receipts,
			"HERALD_GROUP_ID=notification-" + suffix, "HERALD_REDIS_PREFIX=" + s.notificationPrefix,
			"HERALD_RULES_ADDR=" + s.Addrs.RulesGRPC, "HERALD_ACK_BASE_URL=http://" + s.Addrs.AckHTTP,
			"HERALD_ACK_LINK_KEY_FILE=" + s.AckLinks.PrivateKeyFile, "HERALD_REFERENCE_KEY_FILE=" + refKeyFile,
			"HERALD_SMTP_ADDR=" + s.SMTP.Addr, "HERALD_SMTP_STARTTLS=false",
			"HERALD_WEBHOOK_SECRET_FILE=" + WriteSecret(t, "e2e-webhook-secret"), "HERALD_RETRY_INITIAL=200ms", "HERALD_RETRY_MAX=2s",
			"HERALD_SEND_TIMEOUT=5s", "HERALD_RATE_LIMIT_MAX=0",
		},
	}
	health := map[string]string{
		"intake": s.Addrs.IntakeGRPC, "rules": s.Addrs.RulesGRPC,
		"acknowledgement": s.Addrs.AckGRPC, "notification": s.Addrs.NotificationGRPC,
	}
	for _, name := range Services {
		security := s.TLS.ServiceEnv(name)
		if opts.SecureInfra {
			security = append(s.TLS.ProductionEnv(name), secureInfraEnv(t, name)...)
		}
		signing := []string{"HERALD_EVENT_SIGNING_KEY_FILE=" + keys.PrivateKeyFiles[name]}
		p := Start(t, name, bins[name], append(append(append(append(append([]string{}, common...), signing...), security...), env[name]...), opts.Env[name]...))
		s.Procs[name] = p
		WaitHealthyTLS(t, health[name], s.TLS.Client, 60*time.Second, p)
	}
	tel := telemetry.Nop("e2e")
	for _, target := range []string{s.Addrs.IntakeGRPC, s.Addrs.AckGRPC} {
		conn, err := grpcserver.Dial(context.Background(), target, tel, grpcserver.ClientTLS(s.TLS.Client, ""))
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

// WriteSenderBindings writes an intake sender-bindings file that binds
// identity (a certificate's, e.g. devca.SPIFFEID(ClientIdentity)) to the
// trusts ods, and returns its path.
func WriteSenderBindings(t testing.TB, identity string, ods ...string) string {
	t.Helper()
	body := fmt.Sprintf("senders:\n  - identity: %q\n    trusts: [%s]\n", identity, strings.Join(ods, ", "))
	path := filepath.Join(t.TempDir(), "senders.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// WritePatientKeys writes a key-encryption key and a keyring with a
// patient-data key for each trust, and returns the intake/console settings
// naming them (HERALD_KEYRING_FILE, HERALD_KEK_FILE): intake seals every
// report's patient data, as in production.
func WritePatientKeys(t testing.TB, ods ...string) []string {
	t.Helper()
	dir := t.TempDir()
	f := sealing.Files{KeyringFile: filepath.Join(dir, "keyring.json"), KEKFile: filepath.Join(dir, "kek")}
	if err := sealing.GenerateKEKFile(f.KEKFile); err != nil {
		t.Fatal(err)
	}
	kek, err := sealing.LoadFileKEK(f.KEKFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, trust := range ods {
		if _, err := sealing.Rotate(context.Background(), f.KeyringFile, kek, trust, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"HERALD_KEYRING_FILE=" + f.KeyringFile, "HERALD_KEK_FILE=" + f.KEKFile}
}

// Restart kill -9s a service and starts it again, waiting until healthy.
func (s *System) Restart(t testing.TB, name string) {
	t.Helper()
	p := s.Procs[name]
	p.Kill9()
	p.Restart(t)
	addr := map[string]string{"intake": s.Addrs.IntakeGRPC, "rules": s.Addrs.RulesGRPC, "acknowledgement": s.Addrs.AckGRPC, "notification": s.Addrs.NotificationGRPC}[name]
	WaitHealthyTLS(t, addr, s.TLS.Client, 60*time.Second, p)
}

// SendMLLP sends one HL7 message to intake over mutual TLS as the harness
// and returns the ACK.
func (s *System) SendMLLP(msg string) (string, error) {
	return SendMLLPTLS(s.Addrs.MLLP, msg, s.TLS.Client)
}

// CtlEnv is the environment heraldctl needs to call this system's
// services (its certificate), on top of the test's own.
func (s *System) CtlEnv() []string {
	return append(os.Environ(), s.TLS.CtlEnv()...)
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

// SignedAs returns the harness's log settings with service's event signing
// key: what the harness writes with them is signed as that service.
func (s *System) SignedAs(service string) eventlog.Config {
	c := s.Log
	c.SigningKeyFile = s.EventKeys.PrivateKeyFiles[service]
	return c
}

// NewAckLinkKeys makes a throwaway acknowledge-link key pair in a
// temporary folder (as NewTLS makes the CA).
func NewAckLinkKeys(t testing.TB) acklink.Generated {
	t.Helper()
	g, err := acklink.GenerateFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// WriteSecret writes a secret into a file of its own (mode 0600) and
// returns its path, for a -xxx-file setting.
func WriteSecret(t testing.TB, secret string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "secret-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(secret + "\n"); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// secureRedisAdmin returns a client of the TLS Redis as its admin user,
// with database 0 emptied first: the services' ACL users reach only the
// production key prefixes, which a previous run may have left behind.
func secureRedisAdmin(t testing.TB) *redis.Client {
	t.Helper()
	c := testinfra.RedisTLS(t, testinfra.PrincipalAdmin)
	rdb, err := redisconn.NewClient(redisconn.Config{Addr: c.Addrs[0], Username: c.User, Password: c.Password, TLS: true, TLSCAFile: c.CAFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("empty the TLS Redis: %v", err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// secureInfraEnv is how service name reaches the secured Kafka and Redis:
// SASL_SSL as its principal herald-<name>, TLS Redis as its ACL user (rules
// has no Redis).
func secureInfraEnv(t testing.TB, name string) []string {
	t.Helper()
	principal := "herald-" + name
	k := testinfra.KafkaSASL(t, principal)
	env := []string{
		"HERALD_KAFKA_BROKERS=" + strings.Join(k.Addrs, ","), "HERALD_KAFKA_TLS=true", "HERALD_KAFKA_TLS_CA=" + k.CAFile,
		"HERALD_KAFKA_SASL_USER=" + principal, "HERALD_KAFKA_SASL_PASSWORD_FILE=" + k.PasswordFile,
	}
	if name == "rules" {
		return env
	}
	r := testinfra.RedisTLS(t, principal)
	return append(env, "HERALD_REDIS_ADDR="+r.Addrs[0], "HERALD_REDIS_DB=0", "HERALD_REDIS_TLS=true", "HERALD_REDIS_TLS_CA="+r.CAFile,
		"HERALD_REDIS_USER="+principal, "HERALD_REDIS_PASSWORD_FILE="+r.PasswordFile)
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
