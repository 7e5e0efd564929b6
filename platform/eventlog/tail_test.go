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

// The records a Tail read past the committed offset are kept per partition
// and shared: a later read fetches only what was appended since, and what
// it returns is still exactly the key's events in the log between the
// committed offset and the end, as the log grows and the group commits.
func TestTailKeepsWhatItReadAndFollowsTheLogAndTheGroup(t *testing.T) {
	cfg := FreshTopics(t, 1)
	group := testinfra.UniqueName("group")
	appendRaised(t, cfg, "a", "b")
	tail := NewTail(cfg, group)
	defer tail.Close()
	ctx := context.Background()
	ids := func(key string) []string {
		t.Helper()
		got, err := tail.Unhandled(ctx, key, -1, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range got {
			out = append(out, d.Event.GetEventId())
		}
		return out
	}
	first := ids("a")
	if len(first) != 1 {
		t.Fatalf("got %v, want a's one event", first)
	}
	w := NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	more := raisedEvent("a")
	more.EventId = "a-more"
	if err := w.Append(ctx, more); err != nil {
		t.Fatal(err)
	}
	if got := ids("a"); len(got) != 2 || got[0] != first[0] || got[1] != "a-more" {
		t.Fatalf("after an append: got %v, want %s then a-more", got, first[0])
	}
	if got := ids("b"); len(got) != 1 {
		t.Fatalf("b: got %v, want its one event", got)
	}
	// The group handles everything but a-last, which its handler holds
	// (unhandled, so uncommitted) until the test ends.
	consumeAll(t, ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard()}, func(ctx context.Context, d Delivery) error {
		if d.Event.GetEventId() == "a-last" {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	testinfra.WaitCommitted(t, cfg.Brokers, cfg.EventsTopic, 60*time.Second, group)
	last := raisedEvent("a")
	last.EventId = "a-last"
	if err := w.Append(ctx, last); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a's events the group committed past still returned", func() bool {
		got := ids("a")
		return len(got) == 1 && got[0] == "a-last"
	})
	if got := ids("b"); len(got) != 0 {
		t.Fatalf("b after the group committed past it: got %v, want none", got)
	}
}
