package eventlog_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
)

// saslConfig is the configuration of principal on the test Kafka's
// SASL_SSL listener, with the topics named as in production plus suffix
// (the ACLs are prefixed patterns on the production names).
func saslConfig(t *testing.T, principal, suffix string) eventlog.Config {
	t.Helper()
	c := testinfra.KafkaSASL(t, principal)
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = c.Addrs
	cfg.Partitions = 2
	cfg.EventsTopic = eventlog.TopicEvents + suffix
	cfg.DLQTopic = eventlog.TopicDLQ + suffix
	cfg.StateTopic = eventlog.TopicState + suffix
	cfg.TLS = true
	cfg.TLSCAFile = c.CAFile
	cfg.SASLUser, cfg.SASLPassword = c.User, c.Password
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// secureTopics returns a fresh topic suffix; the topics are deleted at the
// end of the test (through the plaintext listener, whose anonymous
// principal is the harness's).
func secureTopics(t *testing.T) string {
	t.Helper()
	suffix := "-" + testinfra.UniqueName("sec")
	t.Cleanup(func() {
		c := &kafka.Client{Addr: kafka.TCP(testinfra.KafkaBrokers(t)...)}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{
			eventlog.TopicEvents + suffix, eventlog.TopicDLQ + suffix, eventlog.TopicState + suffix}})
	})
	return suffix
}

// countRecords reads topic to its end as the harness's super user over
// SASL_SSL.
func countRecords(t *testing.T, suffix, topic string) int {
	t.Helper()
	admin := saslConfig(t, testinfra.PrincipalAdmin, suffix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	if err := eventlog.ReadTopic(ctx, admin, topic, func(_, _ []byte, _ int, _ int64) error { n++; return nil }); err != nil {
		t.Fatalf("read %s as %s: %v", topic, testinfra.PrincipalAdmin, err)
	}
	return n
}

func TestServicePrincipalWorksOverSASLSSL(t *testing.T) {
	suffix := secureTopics(t)
	cfg := saslConfig(t, testinfra.PrincipalAcknowledgement, suffix)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The service creates its topics as its own principal.
	if err := eventlog.EnsureTopics(ctx, cfg, logging.Discard()); err != nil {
		t.Fatalf("ensure topics as %s: %v", cfg.SASLUser, err)
	}
	w := eventlog.NewWriter(cfg, "acknowledgement", telemetry.Nop("test"))
	defer w.Close()
	for n := range 3 {
		if err := w.Append(ctx, raised("a1", n)); err != nil {
			t.Fatalf("append as %s: %v", cfg.SASLUser, err)
		}
	}
	if err := w.Put(ctx, cfg.StateTopic, "a1", []byte("state")); err != nil {
		t.Fatalf("put state as %s: %v", cfg.SASLUser, err)
	}

	// It consumes in its group: the second event is dead-lettered, the
	// others handled and committed.
	group := "acknowledgement-" + testinfra.UniqueName("g")
	poison := raised("a1", 1).GetEventId()
	c := newCollector(2)
	stop := consume(t, cfg, group, func(ctx context.Context, d eventlog.Delivery) error {
		if d.Event.GetEventId() == poison {
			return eventlog.Permanent(errors.New("cannot be handled"))
		}
		return c.handle(ctx, d)
	})
	c.wait(t)
	stop()

	// A new member of the group resumes after the committed offsets.
	if err := w.Append(ctx, raised("a1", 3)); err != nil {
		t.Fatal(err)
	}
	again := newCollector(1)
	stop = consume(t, cfg, group, again.handle)
	got := again.wait(t)
	stop()
	if len(got) != 1 || got[0].Event.GetEventId() != raised("a1", 3).GetEventId() {
		t.Fatalf("after restart the group got %v, want only the new event (offsets committed)", got)
	}

	// It rebuilds from the state topic, and the dead letter is there.
	var state []string
	if err := eventlog.ReadTopic(ctx, cfg, cfg.StateTopic, func(_, v []byte, _ int, _ int64) error { state = append(state, string(v)); return nil }); err != nil {
		t.Fatalf("read state topic as %s: %v", cfg.SASLUser, err)
	}
	if len(state) != 1 || state[0] != "state" {
		t.Fatalf("state topic: got %q, want [state]", state)
	}
	if n := countRecords(t, suffix, cfg.DLQTopic); n != 1 {
		t.Fatalf("dead-letter topic: %d records, want 1", n)
	}
}

func TestSASLSSLRefusesWhoIsNotAuthenticated(t *testing.T) {
	suffix := secureTopics(t)
	admin := saslConfig(t, testinfra.PrincipalAdmin, suffix)
	ctx := context.Background()
	if err := eventlog.EnsureTopics(ctx, admin, logging.Discard()); err != nil {
		t.Fatal(err)
	}
	good := saslConfig(t, testinfra.PrincipalIntake, suffix)
	noTLS, noSASL, wrongPassword := good, good, good
	noTLS.TLS, noTLS.TLSCAFile = false, ""
	noSASL.SASLUser, noSASL.SASLPassword = "", ""
	wrongPassword.SASLPassword = "not-" + good.SASLPassword
	for name, cfg := range map[string]eventlog.Config{"plaintext": noTLS, "TLS without SASL": noSASL, "wrong password": wrongPassword} {
		t.Run(name, func(t *testing.T) {
			w := eventlog.NewWriter(cfg, "outsider", telemetry.Nop("test"))
			defer w.Close()
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := w.Append(actx, raised("a1", 0)); err == nil {
				t.Fatal("append succeeded")
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := eventlog.ReadTopic(rctx, cfg, cfg.EventsTopic, func(_, _ []byte, _ int, _ int64) error { return nil })
			if err == nil {
				t.Fatal("read succeeded")
			}
		})
	}
	if n := countRecords(t, suffix, admin.EventsTopic); n != 0 {
		t.Fatalf("events topic holds %d records written by unauthenticated clients", n)
	}
	// The same principal, authenticated, may append.
	w := eventlog.NewWriter(good, "intake", telemetry.Nop("test"))
	defer w.Close()
	if err := w.Append(ctx, raised("a1", 0)); err != nil {
		t.Fatalf("append as %s: %v", good.SASLUser, err)
	}
}

func TestACLsRefuseTheWrongPrincipal(t *testing.T) {
	suffix := secureTopics(t)
	admin := saslConfig(t, testinfra.PrincipalAdmin, suffix)
	ctx := context.Background()
	if err := eventlog.EnsureTopics(ctx, admin, logging.Discard()); err != nil {
		t.Fatal(err)
	}

	// The operator may read the log but not write to it.
	operator := saslConfig(t, testinfra.PrincipalOperator, suffix)
	w := eventlog.NewWriter(operator, "outsider", telemetry.Nop("test"))
	defer w.Close()
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := w.Append(actx, raised("a1", 0))
	if err == nil || !strings.Contains(err.Error(), "Authorization") {
		t.Fatalf("append as %s: got %v, want a topic authorization failure", operator.SASLUser, err)
	}
	// Intake may not write the acknowledgement service's state topic.
	intake := saslConfig(t, testinfra.PrincipalIntake, suffix)
	iw := eventlog.NewWriter(intake, "intake", telemetry.Nop("test"))
	defer iw.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := iw.Put(pctx, intake.StateTopic, "a1", []byte("forged")); err == nil || !strings.Contains(err.Error(), "Authorization") {
		t.Fatalf("put state as %s: got %v, want a topic authorization failure", intake.SASLUser, err)
	}
	if n := countRecords(t, suffix, admin.EventsTopic) + countRecords(t, suffix, admin.StateTopic); n != 0 {
		t.Fatalf("%d records written by principals without the right", n)
	}

	// Intake may not read the events, nor join a consumer group: the group
	// never starts, and its join errors say why.
	aw := eventlog.NewWriter(admin, "harness", telemetry.Nop("test"))
	defer aw.Close()
	if err := aw.Append(ctx, raised("a1", 0)); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := eventlog.ReadTopic(rctx, intake, intake.EventsTopic, func(_, _ []byte, _ int, _ int64) error { return nil }); err == nil {
		t.Fatalf("read events as %s succeeded", intake.SASLUser)
	}
	refused := &logWatch{want: "Authorization Failed", seen: make(chan struct{})}
	handled := make(chan struct{}, 1)
	cctx, stopConsumer := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- eventlog.Consume(cctx, eventlog.ConsumerConfig{Config: intake, GroupID: "rules-" + testinfra.UniqueName("g"),
			Logger: slog.New(refused), MinBackoff: 10 * time.Millisecond}, func(context.Context, eventlog.Delivery) error {
			handled <- struct{}{}
			return nil
		})
	}()
	select {
	case <-refused.seen:
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer group of a principal without the group's ACL logged no authorization failure")
	}
	stopConsumer()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
		t.Fatal("a principal without the group's ACL handled a record")
	default:
	}
}

// logWatch is a slog handler that signals the first record whose message
// or attributes contain want.
type logWatch struct {
	want string
	once sync.Once
	seen chan struct{}
}

func (l *logWatch) Enabled(context.Context, slog.Level) bool { return true }

func (l *logWatch) Handle(_ context.Context, r slog.Record) error {
	text := r.Message
	r.Attrs(func(a slog.Attr) bool { text += " " + a.Value.String(); return true })
	if strings.Contains(text, l.want) {
		l.once.Do(func() { close(l.seen) })
	}
	return nil
}

func (l *logWatch) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logWatch) WithGroup(string) slog.Handler      { return l }
