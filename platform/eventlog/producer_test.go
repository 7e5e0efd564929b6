package eventlog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/produce"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/testinfra"
)

// gatedTransport counts produce requests and, until open is closed, holds
// each one before sending it, so that a test can queue writes behind it.
type gatedTransport struct {
	next     kafka.RoundTripper
	open     chan struct{}
	held     chan struct{} // receives for each produce request held (the first 100)
	produces atomic.Int32
}

func newGatedTransport() *gatedTransport {
	return &gatedTransport{next: &kafka.Transport{}, open: make(chan struct{}), held: make(chan struct{}, 100)}
}

func (g *gatedTransport) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	if _, ok := req.(*produce.Request); ok {
		g.produces.Add(1)
		select {
		case g.held <- struct{}{}:
		default:
		}
		<-g.open
	}
	return g.next.RoundTrip(ctx, addr, req)
}

// FreshTopics returns a config of the test broker whose three topics are
// new (with the given partitions) and are deleted after the test. The
// external tests use it too.
func FreshTopics(t testing.TB, partitions int) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Brokers = testinfra.KafkaBrokers(t)
	cfg.Partitions = partitions
	cfg.EventsTopic = testinfra.UniqueName("events")
	cfg.DLQTopic = testinfra.UniqueName("dlq")
	cfg.StateTopic = testinfra.UniqueName("state")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, cfg, logging.Discard()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: &kafka.Transport{}}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{cfg.EventsTopic, cfg.DLQTopic, cfg.StateTopic}})
	})
	return cfg
}

// producerTopics is FreshTopics whose events and state partitions have
// each taken a record (key warmUp).
func producerTopics(t testing.TB, partitions int) Config {
	t.Helper()
	cfg := FreshTopics(t, partitions)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: &kafka.Transport{}}
	// A new topic's partitions take a moment to get their leader; the tests
	// count requests, so wait until every partition takes a record.
	for _, topic := range []string{cfg.EventsTopic, cfg.StateTopic} {
		for partition := range partitions {
			for {
				res, err := client.Produce(ctx, &kafka.ProduceRequest{Topic: topic, Partition: partition, RequiredAcks: kafka.RequireAll,
					Records: kafka.NewRecordReader(kafka.Record{Key: kafka.NewBytes([]byte(warmUp))})})
				if err == nil && res.Error == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("partition %d of %s never took a record: %v %v", partition, topic, err, res)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	return cfg
}

// warmUp is the key of the records producerTopics writes.
const warmUp = "warm-up"

// partitionsOf reads topic to its end and returns each key's partitions
// (but warmUp's).
func partitionsOf(t *testing.T, cfg Config, topic string) map[string][]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string][]int{}
	if err := ReadTopic(ctx, cfg, topic, func(key, _ []byte, partition int, _ int64) error {
		if string(key) != warmUp {
			got[string(key)] = append(got[string(key)], partition)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// heldProducer returns a producer whose first write (of key) is in flight
// and held by gate, so that the writes that follow queue behind it; first
// receives that write's outcome once gate opens.
func heldProducer(t *testing.T, cfg Config, key string) (p *producer, gate *gatedTransport, first <-chan error) {
	t.Helper()
	gate = newGatedTransport()
	p = newProducer(cfg.Brokers, gate)
	out := make(chan error, 1)
	go func() {
		out <- p.Write(context.Background(), kafka.Message{Topic: cfg.EventsTopic, Key: []byte(key), Value: []byte("v")})
	}()
	<-gate.held
	return p, gate, out
}

// waitQueued waits until n writes wait in p's queue.
func waitQueued(t *testing.T, p *producer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		queued := len(p.queue)
		p.mu.Unlock()
		if queued == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes queued: got %d, want %d", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestProducerSendsTheWritesQueuedDuringARequestInOneRequest(t *testing.T) {
	cfg := producerTopics(t, 12)
	p, gate, first := heldProducer(t, cfg, "alert-first") // what follows queues
	defer p.Close()
	ctx := context.Background()

	const writers = 40
	errs := make(chan error, writers)
	for i := range writers {
		go func() {
			// Each write holds a record for the events topic and one for the
			// state topic, so the next request spans topics and partitions.
			key := []byte(fmt.Sprintf("alert-%d", i))
			errs <- p.Write(ctx,
				kafka.Message{Topic: cfg.EventsTopic, Key: key, Value: []byte("event")},
				kafka.Message{Topic: cfg.StateTopic, Key: key, Value: []byte("state")})
		}()
	}
	waitQueued(t, p, writers)
	close(gate.open)
	if err := <-first; err != nil {
		t.Fatalf("first write: %v", err)
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatalf("queued write: %v", err)
		}
	}
	if got := gate.produces.Load(); got != 2 {
		t.Fatalf("produce requests: got %d, want 2 (the first write's, then one for all %d queued writes)", got, writers)
	}
	for _, topic := range []string{cfg.EventsTopic, cfg.StateTopic} {
		got := partitionsOf(t, cfg, topic)
		want := writers
		if topic == cfg.EventsTopic {
			want++
		}
		if len(got) != want {
			t.Fatalf("%s: got %d keys, want %d", topic, len(got), want)
		}
		for key, parts := range got {
			if len(parts) != 1 {
				t.Fatalf("%s: key %s written %d times, want once", topic, key, len(parts))
			}
		}
	}
}

// A rolling upgrade mixes writers: an alert's events must land in the
// partition kafka-go's Writer chose for its earlier ones, or its order is
// lost.
func TestProducerPartitionsKeysAsKafkaGoWriterDoes(t *testing.T) {
	cfg := producerTopics(t, 12)
	ctx := context.Background()
	kw := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.StateTopic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer kw.Close()
	p := newProducer(cfg.Brokers, &kafka.Transport{})
	defer p.Close()

	var viaWriter []kafka.Message
	for i := range 200 {
		key := []byte(fmt.Sprintf("%08x-alert-%d", i*7919, i))
		viaWriter = append(viaWriter, kafka.Message{Key: key, Value: []byte("v")})
		if err := p.Write(ctx, kafka.Message{Topic: cfg.EventsTopic, Key: key, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := kw.WriteMessages(ctx, viaWriter...); err != nil {
		t.Fatal(err)
	}
	ours, theirs := partitionsOf(t, cfg, cfg.EventsTopic), partitionsOf(t, cfg, cfg.StateTopic)
	if len(ours) != 200 || len(theirs) != 200 {
		t.Fatalf("keys read: got %d and %d, want 200 each", len(ours), len(theirs))
	}
	used := map[int]bool{}
	for key, parts := range ours {
		if fmt.Sprint(parts) != fmt.Sprint(theirs[key]) {
			t.Fatalf("key %s: producer wrote to partitions %v, kafka-go's Writer to %v", key, parts, theirs[key])
		}
		used[parts[0]] = true
	}
	if len(used) < 10 {
		t.Fatalf("200 keys used %d of 12 partitions: not hashed", len(used))
	}
}

func TestProducerFailsOnlyTheWritesThatCannotBeWritten(t *testing.T) {
	cfg := producerTopics(t, 3)
	p, gate, first := heldProducer(t, cfg, "a0")
	defer p.Close()
	ctx := context.Background()

	missing := testinfra.UniqueName("no-such-topic")
	results := map[string]chan error{"good": make(chan error, 1), "missing": make(chan error, 1), "too large": make(chan error, 1)}
	write := func(name string, msgs ...kafka.Message) {
		go func() { results[name] <- p.Write(ctx, msgs...) }()
	}
	// Queued in this order, "good" and "missing" share a request; "too
	// large" (over maxBytes) goes alone after them.
	write("good", kafka.Message{Topic: cfg.EventsTopic, Key: []byte("a1"), Value: []byte("v")})
	waitQueued(t, p, 1)
	write("missing", kafka.Message{Topic: cfg.EventsTopic, Key: []byte("a2"), Value: []byte("v")}, kafka.Message{Topic: missing, Key: []byte("a2"), Value: []byte("v")})
	waitQueued(t, p, 2)
	write("too large", kafka.Message{Topic: cfg.EventsTopic, Key: []byte("a3"), Value: make([]byte, 2<<20)})
	waitQueued(t, p, 3)
	close(gate.open)

	if err := <-first; err != nil {
		t.Fatalf("first write: %v", err)
	}
	if err := <-results["good"]; err != nil {
		t.Fatalf("a good write queued with a failing one: %v", err)
	}
	err := <-results["missing"]
	if !errors.Is(err, kafka.UnknownTopicOrPartition) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("write to a missing topic: got %v, want unknown topic naming %s", err, missing)
	}
	err = <-results["too large"]
	if !errors.Is(err, kafka.MessageSizeTooLarge) {
		t.Fatalf("write of a 2 MiB record: got %v, want %v", err, kafka.MessageSizeTooLarge)
	}
	// The held request (a0), good's (missing's write fails before it
	// reaches a request: its topic has no leaders) and too large's, sent
	// once: a record that can never be written is not tried again.
	if got := gate.produces.Load(); got != 3 {
		t.Fatalf("produce requests: got %d, want 3 (each retry of the 2 MiB record adds one)", got)
	}
	got := partitionsOf(t, cfg, cfg.EventsTopic)
	if len(got["a0"]) != 1 || len(got["a1"]) != 1 || len(got["a3"]) != 0 {
		t.Fatalf("records on the log: %v; want a0 and a1 once, a3 never", got)
	}
}

func TestProducerCloseWritesWhatIsQueued(t *testing.T) {
	cfg := producerTopics(t, 3)
	p, gate, first := heldProducer(t, cfg, "k0")
	ctx := context.Background()

	const writes = 5
	errs := make(chan error, writes)
	for i := 1; i < writes; i++ {
		go func() {
			errs <- p.Write(ctx, kafka.Message{Topic: cfg.EventsTopic, Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")})
		}()
	}
	waitQueued(t, p, writes-1)
	var closed sync.WaitGroup
	closed.Add(1)
	go func() { defer closed.Done(); p.Close() }()
	close(gate.open)
	if err := <-first; err != nil {
		t.Fatalf("write in flight at Close: %v", err)
	}
	for range writes - 1 {
		if err := <-errs; err != nil {
			t.Fatalf("write queued before Close: %v", err)
		}
	}
	closed.Wait()
	if err := p.Write(ctx, kafka.Message{Topic: cfg.EventsTopic, Key: []byte("late"), Value: []byte("v")}); !errors.Is(err, errProducerClosed) {
		t.Fatalf("write after Close: got %v, want %v", err, errProducerClosed)
	}
	if got := partitionsOf(t, cfg, cfg.EventsTopic); len(got) != writes {
		t.Fatalf("keys on the log: got %d, want %d", len(got), writes)
	}
}

// lingerClock is a simulated clock that counts After calls: the producer
// calls After once each time it starts to linger.
type lingerClock struct {
	*clock.Simulated
	lingers atomic.Int32
}

func (c *lingerClock) After(d time.Duration) <-chan time.Time {
	c.lingers.Add(1)
	return c.Simulated.After(d)
}

// waitLingers waits until the producer has started n lingers.
func (c *lingerClock) waitLingers(t *testing.T, n int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.lingers.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("lingers started: got %d, want %d", c.lingers.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// The linger is timed by a simulated clock that only the test moves, so
// that every assertion is about order and counts: a linger that ends while
// the clock stands still ended because enough writes queued, and a write
// that waits for the linger waits until the test moves the clock.
func TestProducerLingersOnlyAfterARequestOfSeveralWrites(t *testing.T) {
	cfg := producerTopics(t, 12)
	gate := newGatedTransport()
	p := makeProducer(cfg.Brokers, gate)
	clk := &lingerClock{Simulated: clock.NewSimulated(time.Now())}
	p.clock = clk
	go p.loop()
	defer p.Close()
	// Each write gives up after a minute: a write that waits for a linger
	// the test never ends would otherwise hang the test.
	write := func(key string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return p.Write(ctx, kafka.Message{Topic: cfg.EventsTopic, Key: []byte(key), Value: []byte("v")})
	}
	// start starts a write of each key; wait waits for them all.
	start := func(keys ...string) (wait func()) {
		errs := make(chan error, len(keys))
		for _, k := range keys {
			go func() { errs <- write(k) }()
		}
		return func() {
			t.Helper()
			for range keys {
				if err := <-errs; err != nil {
					t.Fatalf("write: %v (the clock stood still: a write that waited for the linger never returns)", err)
				}
			}
		}
	}
	produces := func(want int32, why string) {
		t.Helper()
		if got := gate.produces.Load(); got != want {
			t.Fatalf("produce requests: got %d, want %d (%s)", got, want, why)
		}
	}

	// A request of six writes: the first write is held in flight while
	// six more queue behind it. The lone first write is not followed by a
	// linger; the six are.
	held := start("held")
	<-gate.held
	queued := start("q1", "q2", "q3", "q4", "q5", "q6")
	waitQueued(t, p, 6)
	close(gate.open)
	held()
	queued()
	produces(2, "the held write's, then one for the six queued behind it")
	clk.waitLingers(t, 1)

	// The producer now lingers until six writes queue: five writes wait for
	// the linger to end and then share one request.
	five := start("a", "b", "c", "d", "e")
	waitQueued(t, p, 5)
	produces(2, "nothing is sent while the producer lingers")
	clk.Advance(p.linger)
	five()
	produces(3, "the five writes made within the linger in one request")

	// Writers that each wait for their write come back together: once as
	// many writes as the last request carried (five) have queued, the
	// linger ends without the clock moving.
	clk.waitLingers(t, 2)
	start("f", "g", "h", "i", "j")()
	produces(4, "the five writes that came back together in one request")

	// After a lone write the producer does not linger: the write after it
	// is sent at once. (End the linger that followed f..j first.)
	clk.waitLingers(t, 3)
	clk.Advance(p.linger)
	start("lone")()
	start("next")()
	produces(6, "the lone write's and the next one's")
	if got := clk.lingers.Load(); got != 3 {
		t.Fatalf("lingers started: got %d, want 3 (none after a request of one write)", got)
	}
}
