package eventlog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
)

// Tail returns the events of one key that a group has not committed past:
// all of them before the group ran, none once it committed everything,
// only those after the caller's own offset, and ErrTooFarBehind (an
// outage) beyond the caller's bound.
func TestTailReturnsTheKeysEventsTheGroupHasNotCommittedPast(t *testing.T) {
	cfg := FreshTopics(t, 3)
	group := testinfra.UniqueName("group")
	appendRaised(t, cfg, "a", "b", "c")
	w := NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	second := raisedEvent("a")
	second.EventId = "a-second"
	if err := w.Append(context.Background(), second); err != nil {
		t.Fatal(err)
	}
	tail := NewTail(cfg, group)
	defer tail.Close()
	ctx := context.Background()

	got, err := tail.Unhandled(ctx, "a", -1, 100)
	if err != nil || len(got) != 2 || got[0].Event.GetAlertId() != "a" || got[1].Event.GetEventId() != "a-second" || got[1].Offset <= got[0].Offset {
		t.Fatalf("before the group ran: got %v, %v; want a's two events in log order", got, err)
	}
	after, err := tail.Unhandled(ctx, "a", got[0].Offset, 100)
	if err != nil || len(after) != 1 || after[0].Event.GetEventId() != "a-second" {
		t.Fatalf("after the first event's offset: got %v, %v; want the second only", after, err)
	}
	if _, err := tail.Unhandled(ctx, "a", -1, 1); !errors.Is(err, ErrTooFarBehind) || !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("beyond the bound: got %v, want ErrTooFarBehind (unavailable)", err)
	}

	consumeAll(t, ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard()}, func(context.Context, Delivery) error { return nil })
	testinfra.WaitCommitted(t, cfg.Brokers, cfg.EventsTopic, 60*time.Second, group)
	// The committed offsets it holds may be older for a moment (that only
	// makes it read more); then none is left.
	waitFor(t, 30*time.Second, "events still unhandled after the group committed everything", func() bool {
		got, err := tail.Unhandled(ctx, "a", -1, 100)
		return err == nil && len(got) == 0
	})
}

// A decision reads its projection, and meanwhile the group handles the
// key's events and commits past them (they reached the projection just
// after it was read). Read learns the committed offset before it calls
// project, so those events come back from the log: neither in the
// projection the caller holds nor in the tail would leave a hole the
// decision falls into (the committed offset read after the projection).
func TestReadReturnsEventsCommittedWhileTheProjectionWasRead(t *testing.T) {
	cfg := FreshTopics(t, 3)
	group := testinfra.UniqueName("group")
	appendRaised(t, cfg, "a", "b", "c")
	tail := NewTail(cfg, group)
	defer tail.Close()
	ctx := context.Background()

	got, err := tail.Read(ctx, "a", 100, func(context.Context) (int64, error) {
		// The projection is read (it holds nothing of "a"), then the
		// group handles every record and commits.
		consumeAll(t, ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard()}, func(context.Context, Delivery) error { return nil })
		testinfra.WaitCommitted(t, cfg.Brokers, cfg.EventsTopic, 60*time.Second, group)
		return -1, nil
	})
	if err != nil || len(got) != 1 || got[0].Event.GetAlertId() != "a" {
		t.Fatalf("got %v, %v; want a's event, committed only after the projection was read", got, err)
	}
	sentinel := errors.New("projection unreadable")
	if _, err := tail.Read(ctx, "a", 100, func(context.Context) (int64, error) { return 0, sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("project's error: got %v, want it returned as it is", err)
	}
}
