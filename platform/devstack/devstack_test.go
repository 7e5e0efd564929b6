package devstack

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// The embedded stack must carry Herald's real clients: the eventlog writer
// and consumer group, and go-redis with a Lua script.
func TestEmbeddedStackServesHeraldsClients(t *testing.T) {
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cfg := eventlog.DefaultConfig()
	cfg.Brokers = s.KafkaBrokers
	cfg.Partitions = 2
	if err := eventlog.EnsureTopics(ctx, cfg, logging.Discard()); err != nil {
		t.Fatal(err)
	}
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	ev := &eventsv1.Event{EventId: "e1", AlertId: "a1", Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{}}}
	if err := w.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- eventlog.Consume(cctx, eventlog.ConsumerConfig{Config: cfg, GroupID: "g"}, func(_ context.Context, d eventlog.Delivery) error {
			got <- d.Event.EventId
			return nil
		})
	}()
	select {
	case id := <-got:
		if id != "e1" {
			t.Fatalf("consumed %q, want e1", id)
		}
	case <-ctx.Done():
		t.Fatal("no event consumed from the embedded broker")
	}
	stop()
	<-done

	rc := redis.NewClient(&redis.Options{Addr: s.RedisAddr})
	defer rc.Close()
	n, err := redis.NewScript(`redis.call("ZADD", KEYS[1], 1, "x"); return redis.call("ZCARD", KEYS[1])`).Run(ctx, rc, []string{"{t}:due"}).Int()
	if err != nil || n != 1 {
		t.Fatalf("lua on embedded redis: got %d, %v; want 1", n, err)
	}
}
