package notification_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"github.com/herald-health/herald/platform/acklink"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	notificationv1 "github.com/herald-health/herald/proto/gen/herald/notification/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/notification"
	"github.com/herald-health/herald/services/notification/internal/channel"
)

// Synthetic patient (computed test-range NHS number, made-up name and DOB).
const (
	patientNHS    = "9990000026"
	patientFamily = "Xyloquintestperson"
	patientGiven  = "Ombretta"
	patientDOB    = "1941-07-19"
	reportText    = "Suspected aortic dissection"
	referenceKey  = "0123456789abcdef0123456789abcdef-ref"
	webhookSecret = "webhook-secret-for-tests"
	receiptSecret = "receipt-secret-for-tests"
)

// ---- a fake of the rules service's ResolveTargets ------------------------

type fakeRules struct {
	rulesv1.UnimplementedRulesServiceServer
	mu sync.Mutex
	// people by target ref ("" for REFERRER)
	people map[string][]*rulesv1.ResolvedRecipient
	// dynamic, when set, answers every request.
	dynamic func(req *rulesv1.ResolveTargetsRequest) []*rulesv1.ResolvedRecipient
	calls   int
	addr    string
	srv     *grpc.Server
	// block, when set, is called first with every request (outside the
	// lock): a test holds a replica's step job in hand by blocking in it.
	block func(ctx context.Context, req *rulesv1.ResolveTargetsRequest)
}

func (f *fakeRules) ResolveTargets(ctx context.Context, req *rulesv1.ResolveTargetsRequest) (*rulesv1.ResolveTargetsResponse, error) {
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block != nil {
		block(ctx, req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := &rulesv1.ResolveTargetsResponse{}
	if f.dynamic != nil {
		out.Recipients = f.dynamic(req)
		return out, nil
	}
	for _, t := range req.GetTargets() {
		key := t.GetRef()
		if t.GetKind() == eventsv1.TargetKind_TARGET_KIND_REFERRER {
			key = "referrer:" + req.GetReferrer().GetId()
		}
		out.Recipients = append(out.Recipients, f.people[key]...)
	}
	return out, nil
}

func (f *fakeRules) set(ref string, people ...*rulesv1.ResolvedRecipient) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.people[ref] = people
}

func person(id string, points ...*rulesv1.ContactPoint) *rulesv1.ResolvedRecipient {
	return &rulesv1.ResolvedRecipient{Recipient: &eventsv1.Recipient{PersonId: id, Role: "consultant", Tenant: "RZZ"}, ContactPoints: points}
}

func cp(ch eventsv1.Channel, addr string) *rulesv1.ContactPoint {
	return &rulesv1.ContactPoint{Channel: ch, Address: addr}
}

func startRules(t testing.TB) (*fakeRules, string) {
	t.Helper()
	f := &fakeRules{people: map[string][]*rulesv1.ResolvedRecipient{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f.addr = lis.Addr().String()
	f.serve(t, lis)
	return f, f.addr
}

func (f *fakeRules) serve(t testing.TB, lis net.Listener) {
	srv := grpc.NewServer()
	rulesv1.RegisterRulesServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
}

// stop takes the rules service down: its listener closes, connections drop.
func (f *fakeRules) stop() {
	f.mu.Lock()
	srv := f.srv
	f.mu.Unlock()
	srv.Stop()
}

// restart serves again on the same address.
func (f *fakeRules) restart(t testing.TB) {
	t.Helper()
	lis, err := net.Listen("tcp", f.addr)
	require.NoError(t, err)
	f.serve(t, lis)
}

func (f *fakeRules) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// ---- an SMTP submission server (STARTTLS + AUTH PLAIN) --------------------

type mail struct {
	From, To string
	Data     string
	At       time.Time
}

type smtpServer struct {
	mu    sync.Mutex
	mails []mail
	// block, when set, holds DATA (after the message was read) until closed.
	block  chan struct{}
	inData chan struct{}
	// lose, with block: the message is held unanswered and then refused
	// (451) without being kept: the server never took it.
	lose   bool
	addr   string
	caPool *x509.CertPool
}

type smtpSession struct {
	s        *smtpServer
	authed   bool
	from, to string
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "herald" || pass != "s3cret" {
			return errors.New("bad credentials")
		}
		s.authed = true
		return nil
	}), nil
}
func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "unknown") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user " + to}
	}
	s.to = to
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.s.mu.Lock()
	block, inData, lose := s.s.block, s.s.inData, s.s.lose
	if block == nil || !lose {
		s.s.mails = append(s.s.mails, mail{From: s.from, To: s.to, Data: string(b), At: time.Now()})
	}
	s.s.mu.Unlock()
	if block != nil {
		inData <- struct{}{}
		<-block
		if lose {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "lost"}
		}
	}
	return nil
}
func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }

func (s *smtpServer) to(addr string) []mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mail
	for _, m := range s.mails {
		if m.To == addr {
			out = append(out, m)
		}
	}
	return out
}

func (s *smtpServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mails)
}

func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func startSMTP(t testing.TB) *smtpServer {
	t.Helper()
	cert, pool := selfSigned(t)
	s := &smtpServer{caPool: pool, inData: make(chan struct{}, 16)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s}, nil }))
	srv.Domain = "127.0.0.1"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.addr = lis.Addr().String()
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// ---- a webhook receiver and a Notify-shaped SMS gateway -------------------

type httpSink struct {
	mu       sync.Mutex
	requests []*recorded
	// status returns the status for the n-th request (0-based) to path.
	status func(path string, n int) int
	srv    *httptest.Server
	// block, when set, holds each request unanswered until it is closed,
	// after a signal on held; with lose, the request is not kept (the
	// receiver never took it).
	block chan struct{}
	held  chan struct{}
	lose  bool
}

type recorded struct {
	Path    string
	Header  http.Header
	Body    []byte
	SigOK   bool
	Created time.Time
}

func startSink(t testing.TB, status func(path string, n int) int) *httpSink {
	t.Helper()
	s := &httpSink{status: status, held: make(chan struct{}, 16)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sig := channel.VerifySignature([]byte(webhookSecret), r.Header.Get(channel.HeaderTimestamp), b, r.Header.Get(channel.HeaderSignature))
		s.mu.Lock()
		n := 0
		for _, q := range s.requests {
			if q.Path == r.URL.Path {
				n++
			}
		}
		block, held, lose := s.block, s.held, s.lose
		if block == nil || !lose {
			s.requests = append(s.requests, &recorded{Path: r.URL.Path, Header: r.Header.Clone(), Body: b, SigOK: sig, Created: time.Now()})
		}
		s.mu.Unlock()
		if block != nil {
			held <- struct{}{}
			<-block
			if lose {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		}
		code := http.StatusOK
		if s.status != nil {
			code = s.status(r.URL.Path, n)
		}
		if r.URL.Path == "/v2/notifications/sms" && code < 300 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":"notify-` + time.Now().Format("150405.000000") + `"}`))
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *httpSink) on(path string) []*recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*recorded
	for _, r := range s.requests {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// ---- the environment: real Kafka and Redis, the peers, the service --------

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
	cfg    notification.Config
	rules  *fakeRules
	smtp   *smtpServer
	sink   *httpSink
	logs   *lockedBuffer
	writer *eventlog.Writer
	clock  clock.Clock
	tel    *telemetry.Telemetry
	// authn is the authentication stand-in (nil: none).
	authn grpcserver.Option
	// linkKeys signs acknowledge links (its public half verifies them).
	linkKeys acklink.Generated
}

func newEnv(t testing.TB, status func(path string, n int) int) *env {
	t.Helper()
	rdb := testinfra.NewRedis(t)
	rules, rulesAddr := startRules(t)
	e := &env{t: t, rules: rules, smtp: startSMTP(t), sink: startSink(t, status), logs: &lockedBuffer{}, clock: clock.Real{}}
	cfg := notification.DefaultConfig()
	cfg.Security = servicemain.DevelopmentInsecure()
	cfg.Log.Brokers = testinfra.KafkaBrokers(t)
	cfg.Log.EventsTopic = testinfra.NewTopic(t, "notif-events", 3)
	cfg.Log.DLQTopic = testinfra.NewTopic(t, "notif-dlq", 1)
	cfg.Log.StateTopic = testinfra.NewTopic(t, "notif-state", 1)
	cfg.Log.Partitions = 3
	cfg.GroupID = testinfra.UniqueName("notification")
	cfg.GRPC.Addr = "127.0.0.1:0"
	cfg.ReceiptsAddr = "127.0.0.1:0"
	cfg.ReceiptsSecret = receiptSecret
	cfg.Redis.Addr = rdb.Options().Addr
	cfg.Redis.DB = rdb.Options().DB
	cfg.Rules.Addr = rulesAddr
	cfg.AckBaseURL = "https://herald.test"
	keys, err := acklink.GenerateFiles(t.TempDir())
	require.NoError(t, err)
	cfg.AckLinkKeyFile, cfg.ReferenceKey = keys.PrivateKeyFile, referenceKey
	cfg.AckLinkMinTTL = 10 * time.Minute // below the harness alerts' 1-hour acknowledge-by clock
	e.linkKeys = keys
	cfg.SMTPAddr = e.smtp.addr
	cfg.SMTPUser, cfg.SMTPPassword, cfg.SMTPStartTLS = "herald", "s3cret", true
	cfg.SMTPTLS = &tls.Config{RootCAs: e.smtp.caPool, MinVersion: tls.VersionTLS12}
	cfg.NotifyBaseURL, cfg.NotifyAPIKey, cfg.NotifyTemplateID = e.sink.srv.URL, "notify-key", "tmpl-1"
	cfg.WebhookSecret = webhookSecret
	cfg.RetryInitial, cfg.RetryMax, cfg.RetryAttempts = 50*time.Millisecond, 200*time.Millisecond, 3
	cfg.Lease, cfg.SendTimeout = 3*time.Second, 2*time.Second
	cfg.MaxIdle = 100 * time.Millisecond
	e.cfg = cfg
	e.writer = eventlog.NewWriter(cfg.Log, "test", telemetry.Nop("test"))
	t.Cleanup(func() { _ = e.writer.Close() })
	return e
}

// start runs a service instance; the returned stop cancels it and waits.
func (e *env) start() (*notification.Service, func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := notification.New(ctx, e.cfg, notification.Deps{Logger: logging.New(e.logs, -4, "notification"), Clock: e.clock, Telemetry: e.tel,
		Authentication: e.authn})
	require.NoError(e.t, err)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	// Wait until the projection is ready (the rebuild at start has run).
	rdb := redis.NewClient(&redis.Options{Addr: e.cfg.Redis.Addr, DB: e.cfg.Redis.DB})
	defer rdb.Close()
	require.Eventually(e.t, func() bool {
		n, err := rdb.Exists(context.Background(), e.cfg.RedisPrefix+":epoch").Result()
		return err == nil && n == 1
	}, 60*time.Second, 20*time.Millisecond, "projection ready")
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(e.t, err)
			case <-time.After(30 * time.Second):
				e.t.Errorf("service did not stop")
			}
		})
	}
	e.t.Cleanup(stop)
	return svc, stop
}

func (e *env) append(evs ...*eventsv1.Event) {
	e.t.Helper()
	e.appendCtx(context.Background(), evs...)
}

func (e *env) appendCtx(ctx context.Context, evs ...*eventsv1.Event) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(e.t, e.writer.Append(ctx, evs...))
}

// events returns the events of an alert in the log, of the given payload type.
func (e *env) events(alertID, typ string) []*eventsv1.Event {
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
		if eventlog.TypeOf(&ev) == typ {
			out = append(out, &ev)
		}
		return nil
	})
	require.NoError(e.t, err)
	return out
}

func (e *env) waitEvents(alertID, typ string, n int) []*eventsv1.Event {
	e.t.Helper()
	var got []*eventsv1.Event
	require.Eventually(e.t, func() bool {
		got = e.events(alertID, typ)
		return len(got) >= n
	}, 30*time.Second, 100*time.Millisecond, "waiting for %d %s events of %s", n, typ, alertID)
	return got
}

func (e *env) client(svc *notification.Service) notificationv1.NotificationServiceClient {
	e.t.Helper()
	conn, err := grpc.NewClient(svc.Addrs()["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = conn.Close() })
	return notificationv1.NewNotificationServiceClient(conn)
}

// requireNoSecrets checks text (logs) for patient data and contact addresses.
func requireNoSecrets(t testing.TB, text string, addresses ...string) {
	t.Helper()
	for _, bad := range append([]string{patientNHS, patientFamily, patientGiven, patientDOB, reportText, "s3cret", "notify-key"}, addresses...) {
		require.NotContains(t, text, bad)
	}
}

// ---- events ---------------------------------------------------------------

func raisedEvent(alertID string) *eventsv1.Event {
	return &eventsv1.Event{EventId: eventlog.ID(alertID, "raised"), AlertId: alertID, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: &eventsv1.AlertDetails{
			Accession: "ACC1", FindingCode: "F1", ReportText: reportText,
			Patient:  &eventsv1.Patient{NhsNumber: patientNHS, FamilyName: patientFamily, GivenName: patientGiven, BirthDate: patientDOB},
			Referrer: &eventsv1.Clinician{Id: "G" + alertID[:6], DisplayName: "Dr Referrer", Team: "T1"},
		}}}}
}

func routedEvent(alertID string, cat eventsv1.Category, steps ...*eventsv1.EscalationStep) *eventsv1.Event {
	return &eventsv1.Event{EventId: eventlog.ID(alertID, "routed"), AlertId: alertID, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{
			Category: cat,
			Clocks:   &eventsv1.Clocks{AcknowledgeBy: timestamppb.New(time.Now().Add(time.Hour))},
			Policy:   &eventsv1.EscalationPolicy{FailsafeQueue: "rzz-fs", Steps: steps},
		}}}
}

func step(i uint32, channels []eventsv1.Channel, targets ...*eventsv1.Target) *eventsv1.EscalationStep {
	return &eventsv1.EscalationStep{Index: i, Targets: targets, Channels: channels, AckMode: eventsv1.AckMode_ACK_MODE_ANY_ONE}
}

func referrer() *eventsv1.Target {
	return &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER}
}
func role(ref string) *eventsv1.Target {
	return &eventsv1.Target{Kind: eventsv1.TargetKind_TARGET_KIND_ONCALL_ROLE, Ref: ref}
}

// waitIdle waits until the service has handled every event on the log and
// has no job scheduled or in hand (its schedule is empty): from then on it
// sends nothing more unless a new event comes.
func (e *env) waitIdle() {
	e.t.Helper()
	testinfra.WaitCommitted(e.t, e.cfg.Log.Brokers, e.cfg.Log.EventsTopic, 30*time.Second, e.cfg.GroupID)
	rdb := e.redis()
	require.Eventually(e.t, func() bool {
		n, err := rdb.ZCard(context.Background(), e.cfg.RedisPrefix+":due").Result()
		c, cerr := rdb.ZCard(context.Background(), e.cfg.RedisPrefix+":due:critical").Result()
		return err == nil && cerr == nil && n+c == 0
	}, 30*time.Second, 20*time.Millisecond, "the notification jobs done")
}

func (e *env) redis() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: e.cfg.Redis.Addr, DB: e.cfg.Redis.DB})
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}
