package load

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc"

	"github.com/herald-health/herald/e2e/harness"
	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
)

// system is Herald's four services running as processes on fresh topics
// and a private Redis database, with an SMTP sink. It is the e2e harness's
// StartSystem with what a benchmark needs instead: info-level logs kept
// only as a tail, no debug logging, trace export only on request, the
// processes' ids for resource accounting and the production partition
// count.
type system struct {
	// tls is the harness's identity (every hop is mutual TLS); nil in the
	// plaintext mode.
	tls    *mtls.Source
	procs  map[string]*proc
	log    eventlog.Config
	redis  *redis.Client
	smtp   *smtpSink
	groups map[string]string // consumer group by service
	// notificationDue is the notification service's sorted set of jobs
	// (critical jobs are in notificationDue + ":critical").
	notificationDue string
	intake          []intakev1.IntakeServiceClient
	conns           []*grpc.ClientConn
	// pprof is each service's profiling address when profiling is on.
	pprof map[string]string
}

type systemConfig struct {
	partitions int
	timerStep  time.Duration
	conns      int
	trace      bool
	// notificationWorkers sets notification's --workers when > 0.
	notificationWorkers int
	// profile starts each service with --pprof-addr (s.pprof holds them).
	profile bool
	// plaintext runs the development mode without TLS (-insecure): gRPC,
	// MLLP and FHIR in the clear, for the TLS-cost comparison
	// (BenchmarkTLSCost). Otherwise every hop is mutual TLS.
	plaintext bool
	// unsigned runs without event signing keys, for the signing-cost
	// comparison (BenchmarkSigningCost). Otherwise every service signs
	// what it appends and verifies what it reads, as in production.
	unsigned bool
	// auditOff runs acknowledgement without its audit trail, for the
	// audit-cost comparison (BenchmarkAuditCost).
	auditOff bool
}

func startSystem(b *testing.B, bins map[string]string, sc systemConfig) *system {
	b.Helper()
	s := &system{procs: map[string]*proc{}, redis: testinfra.NewRedis(b), smtp: newSMTPSink(b)}
	s.log = eventlog.DefaultConfig()
	s.log.Brokers = testinfra.KafkaBrokers(b)
	s.log.Partitions = sc.partitions
	s.log.EventsTopic = testinfra.UniqueName("load-events")
	s.log.DLQTopic = testinfra.UniqueName("load-dlq")
	s.log.StateTopic = testinfra.UniqueName("load-state")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := eventlog.EnsureTopics(ctx, s.log, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c := &kafka.Client{Addr: kafka.TCP(s.log.Brokers...), Transport: &kafka.Transport{}}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{s.log.EventsTopic, s.log.DLQTopic, s.log.StateTopic}})
	})

	bundleDir := b.TempDir()
	tmpl, err := os.ReadFile("testdata/bundle.yaml")
	if err != nil {
		b.Fatal(err)
	}
	yaml := strings.ReplaceAll(string(tmpl), "{{TIMER_STEP}}", sc.timerStep.String())
	if err := os.MkdirAll(filepath.Join(bundleDir, "RZZ"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundleDir, "RZZ", "bundle.yaml"), []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}

	free := func() string { return testinfra.FreePort(b) }
	intakeGRPC, rulesGRPC, ackGRPC, ackHTTP, notifGRPC := free(), free(), free(), free(), free()
	suffix := testinfra.UniqueName("load")
	otlp := ""
	if sc.trace {
		otlp = harness.NewTraceCollector(b).Addr
	}
	common := []string{
		"HERALD_KAFKA_BROKERS=" + strings.Join(s.log.Brokers, ","),
		"HERALD_KAFKA_EVENTS_TOPIC=" + s.log.EventsTopic,
		"HERALD_KAFKA_DLQ_TOPIC=" + s.log.DLQTopic,
		"HERALD_KAFKA_STATE_TOPIC=" + s.log.StateTopic,
		fmt.Sprintf("HERALD_KAFKA_PARTITIONS=%d", sc.partitions),
		"HERALD_REDIS_ADDR=" + s.redis.Options().Addr,
		fmt.Sprintf("HERALD_REDIS_DB=%d", s.redis.Options().DB),
		"HERALD_OTLP_ENDPOINT=" + otlp,
		"HERALD_METRICS_ADDR=",
		"HERALD_LOG_LEVEL=info",
	}
	linkKeys := harness.NewAckLinkKeys(b)
	refKeyFile := harness.WriteSecret(b, referenceKey)
	patientKeys := harness.WritePatientKeys(b, "RZZ")
	env := map[string][]string{
		"intake": {
			"HERALD_GRPC_ADDR=" + intakeGRPC, "HERALD_MLLP_ADDR=" + free(), "HERALD_FHIR_ADDR=" + free(),
			"HERALD_OUTCOME_PREFIX=" + suffix + ":intake:", "HERALD_TENANTS_FILE=" + harness.WriteTenants(b, "RZZ"),
			patientKeys[0], patientKeys[1],
		},
		"rules": {
			"HERALD_GRPC_ADDR=" + rulesGRPC, "HERALD_GROUP_ID=rules-" + suffix,
			"HERALD_BUNDLE_DIR=" + bundleDir, "HERALD_BUNDLE_TOPIC=" + suffix + "-bundles",
		},
		"acknowledgement": {
			"HERALD_GRPC_ADDR=" + ackGRPC, "HERALD_HTTP_ADDR=" + ackHTTP, "HERALD_PUBLIC_URL=http://" + ackHTTP,
			"HERALD_GROUP_ID=acknowledgement-" + suffix, "HERALD_REDIS_NAMESPACE=" + suffix,
			"HERALD_ACK_LINK_PUBLIC_KEYS_FILE=" + linkKeys.PublicKeyFile, "HERALD_REFERENCE_KEY_FILE=" + refKeyFile,
			"HERALD_DEV_IDENTITY=link-recipient",
		},
		"notification": {
			"HERALD_GRPC_ADDR=" + notifGRPC, "HERALD_RECEIPTS_ADDR=" + free(),
			"HERALD_GROUP_ID=notification-" + suffix, "HERALD_REDIS_PREFIX=" + suffix + ":notification",
			"HERALD_RULES_ADDR=" + rulesGRPC, "HERALD_ACK_BASE_URL=http://" + ackHTTP,
			"HERALD_ACK_LINK_KEY_FILE=" + linkKeys.PrivateKeyFile, "HERALD_REFERENCE_KEY_FILE=" + refKeyFile, "HERALD_SMTP_ADDR=" + s.smtp.addr, "HERALD_SMTP_STARTTLS=false",
			"HERALD_RATE_LIMIT_MAX=0",
		},
	}
	if sc.notificationWorkers > 0 {
		env["notification"] = append(env["notification"], fmt.Sprintf("HERALD_WORKERS=%d", sc.notificationWorkers))
	}
	s.notificationDue = suffix + ":notification:due"
	s.groups = map[string]string{"rules": "rules-" + suffix, "acknowledgement": "acknowledgement-" + suffix, "notification": "notification-" + suffix}
	health := map[string]string{"intake": intakeGRPC, "rules": rulesGRPC, "acknowledgement": ackGRPC, "notification": notifGRPC}
	if sc.profile {
		s.pprof = map[string]string{}
		for _, name := range harness.Services {
			s.pprof[name] = free()
			env[name] = append(env[name], "HERALD_PPROF_ADDR="+s.pprof[name])
		}
	}
	// Every gRPC hop, MLLP and FHIR over mutual TLS, as in production, the
	// load generator bound to the trust it sends for; or, for the
	// comparison (docs/performance.md), the plaintext development mode.
	security := func(string) []string { return []string{"HERALD_PROFILE=development", "HERALD_INSECURE=true"} }
	if !sc.plaintext {
		tlsCA := harness.NewTLS(b)
		s.tls = tlsCA.Client
		security = tlsCA.ServiceEnv
		env["intake"] = append(env["intake"], "HERALD_SENDER_BINDINGS_FILE="+harness.WriteSenderBindings(b, devca.SPIFFEID(harness.ClientIdentity), "RZZ"))
	}
	if sc.auditOff {
		env["acknowledgement"] = append(env["acknowledgement"], "HERALD_AUDIT_OFF=true")
	}
	if !sc.unsigned {
		keys, err := eventsign.GenerateFiles(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		for _, name := range harness.Services {
			env[name] = append(env[name], "HERALD_EVENT_SIGNING_KEY_FILE="+keys.PrivateKeyFiles[name], "HERALD_EVENT_VERIFY_KEYS_FILE="+keys.KeySetFile)
		}
	}
	for _, name := range harness.Services {
		p := startProc(b, name, bins[name], append(append(append([]string{}, common...), security(name)...), env[name]...))
		s.procs[name] = p
		waitHealthy(b, health[name], s.tls, 90*time.Second, p)
	}
	tel := telemetry.Nop("load")
	var dialOpts []grpcserver.DialOption
	if s.tls != nil {
		dialOpts = append(dialOpts, grpcserver.ClientTLS(s.tls, ""))
	}
	for range max(1, sc.conns) {
		conn, err := grpcserver.Dial(context.Background(), intakeGRPC, tel, dialOpts...)
		if err != nil {
			b.Fatal(err)
		}
		s.conns = append(s.conns, conn)
		s.intake = append(s.intake, intakev1.NewIntakeServiceClient(conn))
	}
	b.Cleanup(func() {
		for _, c := range s.conns {
			_ = c.Close()
		}
	})
	return s
}

// proc is a service process whose output tail is kept for diagnostics.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	out  *tail
}

func startProc(b *testing.B, name, path string, env []string) *proc {
	b.Helper()
	p := &proc{name: name, done: make(chan struct{}), out: &tail{max: 64 << 10}}
	p.cmd = exec.Command(path)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	b.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has died.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func waitHealthy(b *testing.B, addr string, id *mtls.Source, within time.Duration, p *proc) {
	b.Helper()
	// harness.WaitHealthy fails the benchmark with its own message; show the
	// process's output tail first if it died on the way.
	ok := make(chan struct{})
	go func() {
		select {
		case <-p.done:
			b.Logf("%s exited during start-up:\n%s", p.name, p.out.String())
		case <-ok:
		}
	}()
	harness.WaitHealthyTLS(b, addr, id, within, nil)
	close(ok)
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
