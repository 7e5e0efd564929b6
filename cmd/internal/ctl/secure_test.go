package ctl

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/redisconn"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// lockedBuffer is a bytes.Buffer safe for a command and the test to share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// An operator follows the log over Kafka's SASL_SSL listener as the
// operator principal (read-only ACLs), with the TLS and SASL settings of
// heraldctl's environment.
func TestTailAsTheOperatorOverSASLSSL(t *testing.T) {
	op := testinfra.KafkaSASL(t, testinfra.PrincipalOperator)
	topic := testinfra.NewTopic(t, eventlog.TopicEvents, 1) // the ACLs grant the production name as a prefix
	plain := eventlog.DefaultConfig()
	plain.Brokers, plain.EventsTopic = testinfra.KafkaBrokers(t), topic
	w := eventlog.NewWriter(plain, "test", telemetry.Nop("test"))
	defer w.Close()
	ev := &eventsv1.Event{EventId: "e-tail-1", AlertId: "a-tail-1", Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{}}}
	if err := w.Append(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_CTL_KAFKA_TLS", "true")
	t.Setenv("HERALD_CTL_KAFKA_TLS_CA", op.CAFile)
	t.Setenv("HERALD_CTL_KAFKA_SASL_USER", op.User)
	t.Setenv("HERALD_CTL_KAFKA_SASL_PASSWORD_FILE", op.PasswordFile)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"tail", "-from-beginning", "-brokers", op.Addrs[0], "-topic", topic}, out, errOut)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "a-tail-1") {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("tail over SASL_SSL showed nothing within a minute; out %q, err %q", out.String(), errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
}

// heraldctl rebuild reaches a TLS Redis as the service's ACL user, with the
// settings of heraldctl's environment.
func TestRebuildOverTLSAsTheServiceUser(t *testing.T) {
	u := testinfra.RedisTLS(t, testinfra.PrincipalAcknowledgement)
	const db = 3 // out of the way of the e2e suites, which use database 0
	rdb, err := redisconn.NewClient(redisconn.Config{Addr: u.Addrs[0], DB: db, Username: u.User, Password: u.Password, TLS: true, TLSCAFile: u.CAFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	key, _ := epochKey("acknowledgement", "")
	if err := rdb.Set(ctx, key, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_CTL_REDIS_TLS", "true")
	t.Setenv("HERALD_CTL_REDIS_TLS_CA", u.CAFile)
	t.Setenv("HERALD_CTL_REDIS_USER", u.User)
	t.Setenv("HERALD_CTL_REDIS_PASSWORD_FILE", u.PasswordFile)
	code, out, errOut := runCtl("rebuild", "-redis", u.Addrs[0], "-redis-db", "3", "acknowledgement")
	if code != 0 || !strings.Contains(out, "will rebuild") {
		t.Fatalf("got %d %q %q", code, out, errOut)
	}
	if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
		t.Fatal("epoch key still there")
	}
}
