package eventlog

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// fetchCounter records the partitions each fetch request asks for.
type fetchCounter struct {
	next kafka.RoundTripper
	mu   sync.Mutex
	asks [][]int32
}

func (f *fetchCounter) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	if r, ok := req.(*fetchapi.Request); ok {
		var parts []int32
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				parts = append(parts, p.Partition)
			}
		}
		f.mu.Lock()
		f.asks = append(f.asks, parts)
		f.mu.Unlock()
	}
	return f.next.RoundTrip(ctx, addr, req)
}

func (f *fetchCounter) requests() [][]int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]int32(nil), f.asks...)
}

func raisedEvent(alertID string) *eventsv1.Event {
	return &eventsv1.Event{
		EventId: ID(alertID, "raised"), AlertId: alertID, Tenant: "RZZ", OccurredAt: timestamppb.New(time.Unix(1700000000, 0)),
		Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: &eventsv1.AlertDetails{Accession: alertID}}},
	}
}

// consumeUntil consumes cfg's events topic as group until want alert ids
// have been handled, and returns them in the order handled.
func consumeUntil(t *testing.T, cfg ConsumerConfig, want int) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- Consume(ctx, cfg, func(_ context.Context, d Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, d.Event.GetAlertId())
			if len(got) == want {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("handled %d of %d records", len(got), want)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

func appendRaised(t *testing.T, cfg Config, ids ...string) {
	t.Helper()
	if err := tryAppendRaised(cfg, ids...); err != nil {
		t.Fatal(err)
	}
}

func tryAppendRaised(cfg Config, ids ...string) error {
	w := NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	events := make([]*eventsv1.Event, len(ids))
	for i, id := range ids {
		events[i] = raisedEvent(id)
	}
	return w.Append(context.Background(), events...)
}

// signalHandler is a slog handler that closes seen at the first record
// with the message msg.
type signalHandler struct {
	msg  string
	once *sync.Once
	seen chan struct{}
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }

func TestOneFetchAsksForEveryPartitionAndCarriesManyRecords(t *testing.T) {
	cfg := FreshTopics(t, 4)
	const alerts = 400
	ids := make([]string, alerts)
	for i := range ids {
		ids[i] = fmt.Sprintf("alert-%d", i)
	}
	appendRaised(t, cfg, ids...)

	counter := &fetchCounter{next: &kafka.Transport{}}
	got := consumeUntil(t, ConsumerConfig{Config: cfg, GroupID: testinfra.UniqueName("group"), Logger: logging.Discard(), transport: counter}, alerts)

	if len(got) != alerts {
		t.Fatalf("handled %d records, want %d", len(got), alerts)
	}
	asks := counter.requests()
	if len(asks) == 0 {
		t.Fatal("no fetch request went through the consumer's transport")
	}
	for i, parts := range asks {
		if len(parts) != 4 {
			t.Fatalf("fetch %d asked for partitions %v: one broker leads all 4, so each fetch should ask for all of them", i, parts)
		}
	}
	// The records were in the log before the consumer started: a few
	// fetches bring them all (one per partition per record would be 400).
	if len(asks) > 20 {
		t.Fatalf("%d fetch requests for %d records already in the log", len(asks), alerts)
	}
}

func TestAGroupPastTheLogEndResumesAtTheEnd(t *testing.T) {
	cfg := FreshTopics(t, 1)
	appendRaised(t, cfg, "old-1", "old-2", "old-3")
	group := testinfra.UniqueName("group")
	// The group's committed offset lies beyond the log (as after the log
	// was truncated under it); fetching from there is out of range.
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: &kafka.Transport{}}
	res, err := client.OffsetCommit(context.Background(), &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{cfg.EventsTopic: {{Partition: 0, Offset: 1000}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Topics[cfg.EventsTopic] {
		if p.Error != nil {
			t.Fatalf("commit offset 1000: %v", p.Error)
		}
	}
	clamped := signalHandler{msg: "offset out of range; resuming at the nearest record", once: &sync.Once{}, seen: make(chan struct{})}
	go func() {
		select {
		case <-clamped.seen:
			if err := tryAppendRaised(cfg, "new-1", "new-2"); err != nil {
				t.Error(err)
			}
		case <-time.After(60 * time.Second):
		}
	}()

	got := consumeUntil(t, ConsumerConfig{Config: cfg, GroupID: group, Logger: slog.New(clamped)}, 2)

	if fmt.Sprint(got) != "[new-1 new-2]" {
		t.Fatalf("handled %v, want the records appended after the restart point: [new-1 new-2]", got)
	}
}

func TestAGroupThatStartsAtTheEndSeesOnlyNewRecords(t *testing.T) {
	cfg := FreshTopics(t, 2)
	appendRaised(t, cfg, "old-1", "old-2", "old-3", "old-4")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // new records until the consumer has joined and seen one
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if err := tryAppendRaised(cfg, fmt.Sprintf("new-%d", i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()

	got := consumeUntil(t, ConsumerConfig{Config: cfg, GroupID: testinfra.UniqueName("tail"), Logger: logging.Discard(), StartAtEnd: true}, 1)

	if !strings.HasPrefix(got[0], "new-") {
		t.Fatalf("a group that starts at the end handled %s, which was in the log before it started", got[0])
	}
}

func TestAPartitionWhoseHandlerIsStuckDoesNotHoldUpTheOthers(t *testing.T) {
	cfg := FreshTopics(t, 2)
	// A backlog on partition 0, more than its queue holds, whose handler
	// will not finish.
	onPartition := func(prefix string, partition, n int) []string {
		var ids []string
		for i := 0; len(ids) < n; i++ {
			id := fmt.Sprintf("%s-%d", prefix, i)
			if (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(id)}, 0, 1) == partition {
				ids = append(ids, id)
			}
		}
		return ids
	}
	appendRaised(t, cfg, onPartition("stuck", 0, 4*partitionQueue)...)

	ctx, cancel := context.WithCancel(context.Background())
	stuck := make(chan struct{}, 1)
	handled := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- Consume(ctx, ConsumerConfig{Config: cfg, GroupID: testinfra.UniqueName("group"), Logger: logging.Discard()},
			func(hctx context.Context, d Delivery) error {
				if d.Partition == 0 {
					select {
					case stuck <- struct{}{}:
					default:
					}
					<-hctx.Done()
					return hctx.Err()
				}
				handled <- d.Event.GetAlertId()
				return nil
			})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-stuck:
	case <-time.After(60 * time.Second):
		t.Fatal("partition 0's backlog was never handed to the handler")
	}

	others := onPartition("other", 1, 5)
	appendRaised(t, cfg, others...)
	for range others {
		select {
		case <-handled:
		case <-time.After(30 * time.Second):
			t.Fatal("records of partition 1 were not handled while partition 0's handler was stuck")
		}
	}
}
