package eventlog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/herald-health/herald/platform/fault"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func TestIDIsDeterministicAndSeparatesParts(t *testing.T) {
	sum := sha256.Sum256([]byte("a\x1fb"))
	if got, want := ID("a", "b"), hex.EncodeToString(sum[:16]); got != want {
		t.Fatalf("ID(a, b): got %s, want %s", got, want)
	}
	if ID("ab", "c") == ID("a", "bc") {
		t.Fatal("different part boundaries gave the same id")
	}
	if got := len(ID("x")); got != 32 {
		t.Fatalf("id length: got %d, want 32", got)
	}
}

func TestTypeOf(t *testing.T) {
	e := &eventsv1.Event{Payload: &eventsv1.Event_SlaBreached{SlaBreached: &eventsv1.SLABreached{}}}
	if got := TypeOf(e); got != "SLABreached" {
		t.Fatalf("got %q, want SLABreached", got)
	}
	if got := TypeOf(&eventsv1.Event{}); got != "" {
		t.Fatalf("no payload: got %q, want empty", got)
	}
}

func TestHeaderCarrierSetReplaces(t *testing.T) {
	var hs []kafka.Header
	c := HeaderCarrier{Headers: &hs}
	c.Set("traceparent", "a")
	c.Set("traceparent", "b")
	if len(hs) != 1 || c.Get("traceparent") != "b" || strings.Join(c.Keys(), ",") != "traceparent" {
		t.Fatalf("headers: got %+v", hs)
	}
}

func TestErrorClasses(t *testing.T) {
	p := fmt.Errorf("handle: %w", Permanent(errors.New("bad")))
	if !IsPermanent(p) || IsPermanent(errors.New("x")) {
		t.Fatal("IsPermanent misclassifies")
	}
	u := fmt.Errorf("append: %w", unavailableError{errors.New("broker down")})
	if !errors.Is(u, fault.ErrUnavailable) {
		t.Fatal("writer errors must be fault.ErrUnavailable")
	}
}

func TestConfigValidateNamesSettings(t *testing.T) {
	c := DefaultConfig()
	c.Brokers = nil
	c.MinInsyncReplicas = 2
	err := c.Validate()
	for _, want := range []string{"kafka-brokers", "kafka-min-insync-replicas"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate: got %v, want it to name %s", err, want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

func TestRetriableKafkaErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("list offsets: %w", kafka.NotLeaderForPartition), true},
		{kafka.LeaderNotAvailable, true},
		{kafka.UnknownTopicOrPartition, true},
		{kafka.TopicAuthorizationFailed, false},
		{fmt.Errorf("fetch: %w", io.ErrUnexpectedEOF), true},
		{errors.New("decode"), false},
	} {
		if got := retriable(c.err); got != c.want {
			t.Errorf("retriable(%v): got %v, want %v", c.err, got, c.want)
		}
	}
}
