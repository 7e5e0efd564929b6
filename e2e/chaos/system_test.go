//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
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

	"github.com/herald-health/herald/e2e/harness"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/testinfra"
)

// replica is one process of a service. Its output goes to a file of its
// own (appended across restarts).
type replica struct {
	service string
	index   int
	path    string
	env     []string
	logPath string
	health  string // gRPC health address

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	up    bool
	kills int
}

func (r *replica) name() string { return fmt.Sprintf("%s-%d", r.service, r.index) }

func (r *replica) start() error {
	f, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.path)
	cmd.Env = append(os.Environ(), r.env...)
	// The replica dies with the suite, even when the suite is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("start %s: %w", r.name(), err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = f.Close(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done, r.up = cmd, done, true
	r.mu.Unlock()
	return nil
}

// kill9 SIGKILLs the process and waits for it to die.
func (r *replica) kill9() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.up = false
	r.kills++
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop asks the process to stop (SIGTERM), then kills it after 10 s.
func (r *replica) stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.up = false
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

func (r *replica) isUp() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up
}

// balancer is a TCP load balancer on loopback in front of a service's
// replicas: each connection goes to a replica that accepts it (tried in a
// random order), as a Kubernetes Service sends it to a ready pod.
type balancer struct {
	addr     string
	backends []string
	l        net.Listener
}

func newBalancer(t testing.TB, backends ...string) *balancer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{addr: l.Addr().String(), backends: backends, l: l}
	go b.serve()
	t.Cleanup(func() { _ = l.Close() })
	return b
}

func (b *balancer) serve() {
	for {
		c, err := b.l.Accept()
		if err != nil {
			return
		}
		go b.pipe(c)
	}
}

func (b *balancer) pipe(c net.Conn) {
	defer c.Close()
	var up net.Conn
	for _, i := range rand.Perm(len(b.backends)) {
		conn, err := net.DialTimeout("tcp", b.backends[i], time.Second)
		if err == nil {
			up = conn
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// redisServer starts a redis-server of the suite's own on a free loopback
// port (the FLUSHALL fault must not touch the shared test Redis).
func redisServer(t testing.TB) string {
	t.Helper()
	addr := testinfra.FreePort(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (platform/infra/deps.sh up installs it): %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	harness.Eventually(t, 10*time.Second, func() bool { return c.Ping(context.Background()).Err() == nil },
		func() string { return "redis-server did not answer PING on " + addr })
	return addr
}

// system is two replicas of each service against the brokers and the
// suite's Redis, with the balancers in front of them and the sinks.
type system struct {
	log       eventlog.Config
	redisAddr string
	redis     *redis.Client
	replicas  map[string][]*replica
	groups    []string
	notifyDue []string // notification's job sets in Redis
	mllp      *balancer
	ackGRPC   *balancer
	ackHTTP   *balancer
	smtp      *smtpSink
	webhook   *webhookSink
	box       *inbox // both sinks' messages
	logDir    string
	// tls is the suite's development CA: every gRPC hop and MLLP are
	// mutual TLS with it, as in the e2e harness (Kafka and Redis stay
	// plaintext: the development profile with -insecure).
	tls *harness.TLS
	// idp is the identity provider the acknowledger signs in with.
	idp *harness.IDP
}

// serviceEnv are settings per service given to both replicas ("NAME=v").
type serviceEnv map[string][]string

func startSystem(t *testing.T, brokers []string, replication int, extra serviceEnv, logDir string) *system {
	t.Helper()
	s := &system{replicas: map[string][]*replica{}, logDir: logDir, tls: harness.NewTLS(t)}
	s.redisAddr = redisServer(t)
	s.redis = redis.NewClient(&redis.Options{Addr: s.redisAddr})
	t.Cleanup(func() { _ = s.redis.Close() })
	s.smtp = newSMTPSink(t)
	s.webhook = newWebhookSink(t, s.smtp.box)
	s.box = s.smtp.box

	s.log = eventlog.DefaultConfig()
	s.log.Brokers = brokers
	s.log.Partitions = 6
	s.log.ReplicationFactor = replication
	s.log.MinInsyncReplicas = min(2, replication)
	s.log.EventsTopic = testinfra.UniqueName("chaos-events")
	s.log.DLQTopic = testinfra.UniqueName("chaos-dlq")
	s.log.StateTopic = testinfra.UniqueName("chaos-state")
	createTopics(t, s.log)

	bundleDir := t.TempDir()
	tmpl, err := os.ReadFile("testdata/bundle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(bundleDir, "RZZ"), 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := strings.ReplaceAll(string(tmpl), "{{WEBHOOK}}", s.webhook.url+"/hook")
	if err := os.WriteFile(filepath.Join(bundleDir, "RZZ", "bundle.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	tenants := harness.WriteTenants(t, "RZZ")

	free := func() string { return testinfra.FreePort(t) }
	type ports struct{ grpc, mllp, fhir, http, receipts string }
	p := map[string][2]ports{}
	for _, svc := range harness.Services {
		p[svc] = [2]ports{{free(), free(), free(), free(), free()}, {free(), free(), free(), free(), free()}}
	}
	s.mllp = newBalancer(t, p["intake"][0].mllp, p["intake"][1].mllp)
	s.ackGRPC = newBalancer(t, p["acknowledgement"][0].grpc, p["acknowledgement"][1].grpc)
	s.ackHTTP = newBalancer(t, p["acknowledgement"][0].http, p["acknowledgement"][1].http)
	rules := newBalancer(t, p["rules"][0].grpc, p["rules"][1].grpc)

	suffix := testinfra.UniqueName("chaos")
	s.groups = []string{"rules-" + suffix, "ack-" + suffix, "notification-" + suffix}
	s.notifyDue = []string{suffix + ":notification:due", suffix + ":notification:due:critical"}
	// Secrets reach the services as files, as a Kubernetes Secret volume
	// gives them.
	linkKeys := harness.NewAckLinkKeys(t)
	refKeyFile := harness.WriteSecret(t, refSecret)
	s.idp = harness.StartIDP(t, "http://"+s.ackHTTP.addr)
	// Every replica signs what it appends with its service's key and
	// verifies what it reads, as in production (#20 item 7).
	eventKeys, err := eventsign.GenerateFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	common := []string{
		"HERALD_OIDC_ISSUER=" + s.idp.Issuer,
		"HERALD_KAFKA_BROKERS=" + strings.Join(brokers, ","),
		"HERALD_KAFKA_EVENTS_TOPIC=" + s.log.EventsTopic,
		"HERALD_KAFKA_DLQ_TOPIC=" + s.log.DLQTopic,
		"HERALD_KAFKA_STATE_TOPIC=" + s.log.StateTopic,
		fmt.Sprintf("HERALD_KAFKA_PARTITIONS=%d", s.log.Partitions),
		fmt.Sprintf("HERALD_KAFKA_REPLICATION_FACTOR=%d", s.log.ReplicationFactor),
		fmt.Sprintf("HERALD_KAFKA_MIN_INSYNC_REPLICAS=%d", s.log.MinInsyncReplicas),
		"HERALD_REDIS_ADDR=" + s.redisAddr,
		"HERALD_OTLP_ENDPOINT=",
		"HERALD_METRICS_ADDR=",
		"HERALD_LOG_LEVEL=info",
	}
	// Session timeouts and leases are the services' defaults (production's)
	// unless -chaos.env says otherwise.
	env := func(svc string, i int) []string {
		x := p[svc][i]
		switch svc {
		case "intake":
			return []string{"HERALD_GRPC_ADDR=" + x.grpc, "HERALD_MLLP_ADDR=" + x.mllp, "HERALD_FHIR_ADDR=" + x.fhir,
				"HERALD_OUTCOME_PREFIX=" + suffix + ":intake:", "HERALD_TENANTS_FILE=" + tenants}
		case "rules":
			return []string{"HERALD_GRPC_ADDR=" + x.grpc, "HERALD_GROUP_ID=rules-" + suffix,
				"HERALD_BUNDLE_DIR=" + bundleDir, "HERALD_BUNDLE_POLL_INTERVAL=500ms", "HERALD_BUNDLE_TOPIC=" + suffix + "-bundles"}
		case "acknowledgement":
			return []string{"HERALD_GRPC_ADDR=" + x.grpc, "HERALD_HTTP_ADDR=" + x.http, "HERALD_PUBLIC_URL=http://" + s.ackHTTP.addr,
				"HERALD_GROUP_ID=ack-" + suffix, "HERALD_REDIS_NAMESPACE=" + suffix,
				"HERALD_ACK_LINK_PUBLIC_KEYS_FILE=" + linkKeys.PublicKeyFile, "HERALD_REFERENCE_KEY_FILE=" + refKeyFile, "HERALD_DEV_IDENTITY=link-recipient"}
		default: // notification
			return []string{"HERALD_GRPC_ADDR=" + x.grpc, "HERALD_RECEIPTS_ADDR=" + x.receipts,
				"HERALD_GROUP_ID=notification-" + suffix, "HERALD_REDIS_PREFIX=" + suffix + ":notification",
				"HERALD_RULES_ADDR=" + rules.addr, "HERALD_ACK_BASE_URL=http://" + s.ackHTTP.addr,
				"HERALD_ACK_LINK_KEY_FILE=" + linkKeys.PrivateKeyFile, "HERALD_REFERENCE_KEY_FILE=" + refKeyFile, "HERALD_SMTP_ADDR=" + s.smtp.addr, "HERALD_SMTP_STARTTLS=false",
				"HERALD_WEBHOOK_SECRET_FILE=" + harness.WriteSecret(t, "chaos-webhook-secret"), "HERALD_RATE_LIMIT_MAX=0"}
		}
	}
	for _, svc := range harness.Services {
		for i := range 2 {
			r := &replica{
				service: svc, index: i, path: bins[svc],
				env: append(append(append(append(append([]string{}, common...), s.tls.ServiceEnv(svc)...), env(svc, i)...),
					"HERALD_EVENT_SIGNING_KEY_FILE="+eventKeys.PrivateKeyFiles[svc], "HERALD_EVENT_VERIFY_KEYS_FILE="+eventKeys.KeySetFile),
					extra[svc]...),
				logPath: filepath.Join(logDir, fmt.Sprintf("%s-%d.log", svc, i)),
				health:  p[svc][i].grpc,
			}
			if err := r.start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(r.stop)
			s.replicas[svc] = append(s.replicas[svc], r)
		}
		for _, r := range s.replicas[svc] {
			harness.WaitHealthyTLS(t, r.health, s.tls.Client, 90*time.Second, nil)
		}
	}
	return s
}

// createTopics creates the suite's topics as Herald does (replication,
// min ISR) and waits until they are served.
func createTopics(t testing.TB, cfg eventlog.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	specs := eventlog.TopicSpecs(cfg)
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 30 * time.Second, Transport: &kafka.Transport{}}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: specs})
	if err != nil {
		t.Fatalf("create the chaos topics on %v: %v", cfg.Brokers, err)
	}
	for name, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			t.Fatalf("create topic %s: %v", name, err)
		}
	}
	if err := eventlog.EnsureTopics(ctx, cfg, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{cfg.EventsTopic, cfg.DLQTopic, cfg.StateTopic}})
	})
}

// quiet reports whether Herald has nothing left to do for the log as it
// is: every group committed to the log's end and no notification job is
// left in Redis. It only tells the suite when to stop waiting; the
// verdict never reads Herald's state.
func (s *system) quiet(ctx context.Context) (bool, string) {
	client := &kafka.Client{Addr: kafka.TCP(s.log.Brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	var reqs []kafka.OffsetRequest
	var parts []int
	for p := range s.log.Partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p))
		parts = append(parts, p)
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{s.log.EventsTopic: reqs}})
	if err != nil {
		return false, err.Error()
	}
	end := map[int]int64{}
	for _, po := range ends.Topics[s.log.EventsTopic] {
		end[po.Partition] = po.LastOffset
	}
	for _, g := range s.groups {
		res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: g, Topics: map[string][]int{s.log.EventsTopic: parts}})
		if err != nil {
			return false, err.Error()
		}
		for _, po := range res.Topics[s.log.EventsTopic] {
			if po.CommittedOffset < end[po.Partition] {
				return false, fmt.Sprintf("group %s at %d of %d on partition %d", g, po.CommittedOffset, end[po.Partition], po.Partition)
			}
		}
	}
	for _, k := range s.notifyDue {
		n, err := s.redis.ZCard(ctx, k).Result()
		if err != nil {
			return false, err.Error()
		}
		if n > 0 {
			return false, fmt.Sprintf("%d notification jobs in %s", n, k)
		}
	}
	return true, ""
}
