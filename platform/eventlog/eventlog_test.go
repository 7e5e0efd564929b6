package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// testConfig returns a config whose three topics are fresh for this test.
var testConfig = eventlog.FreshTopics

// appendRounds appends event n of alert-0 .. alert-(alerts-1) for each n
// below perAlert, one Append per round.
func appendRounds(t *testing.T, w *eventlog.Writer, alerts, perAlert int) {
	t.Helper()
	for n := range perAlert {
		batch := make([]*eventsv1.Event, 0, alerts)
		for a := range alerts {
			batch = append(batch, raised(fmt.Sprintf("alert-%d", a), n))
		}
		if err := w.Append(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
	}
}

func raised(alertID string, n int) *eventsv1.Event {
	return &eventsv1.Event{
		EventId:    eventlog.ID(alertID, "raised", fmt.Sprint(n)),
		AlertId:    alertID,
		Tenant:     "RZZ",
		OccurredAt: timestamppb.New(time.Unix(1700000000, 0)),
		Payload:    &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: &eventsv1.AlertDetails{Accession: "ACC" + fmt.Sprint(n)}}},
	}
}

// collector records deliveries and stops consuming once it has want of them.
type collector struct {
	mu   sync.Mutex
	got  []eventlog.Delivery
	want int
	done chan struct{}
}

func newCollector(want int) *collector { return &collector{want: want, done: make(chan struct{})} }

func (c *collector) handle(_ context.Context, d eventlog.Delivery) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, d)
	if len(c.got) == c.want {
		close(c.done)
	}
	return nil
}

func (c *collector) wait(t *testing.T) []eventlog.Delivery {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Fatalf("consumed %d events, want %d", len(c.got), c.want)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]eventlog.Delivery(nil), c.got...)
}

func consume(t *testing.T, cfg eventlog.Config, group string, h eventlog.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- eventlog.Consume(ctx, eventlog.ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard(), MinBackoff: 10 * time.Millisecond, MaxAttempts: 3}, h)
	}()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Consume returned %v, want nil after stop", err)
		}
	}
}

func TestAppendConsumeInOrderPerAlert(t *testing.T) {
	cfg := testConfig(t, 4)
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	const alerts, perAlert = 5, 4
	appendRounds(t, w, alerts, perAlert)
	c := newCollector(alerts * perAlert)
	stop := consume(t, cfg, testinfra.UniqueName("group"), c.handle)
	got := c.wait(t)
	stop()

	seen := map[string][]string{}
	for _, d := range got {
		if d.Type != "AlertRaised" {
			t.Fatalf("type: got %q, want AlertRaised", d.Type)
		}
		if d.Event.GetProducer() != "test" || d.Event.GetSchemaVersion() != eventlog.SchemaVersion {
			t.Fatalf("envelope: got producer %q version %d", d.Event.GetProducer(), d.Event.GetSchemaVersion())
		}
		seen[d.Event.AlertId] = append(seen[d.Event.AlertId], d.Event.GetAlertRaised().GetDetails().GetAccession())
	}
	for a := 0; a < alerts; a++ {
		id := fmt.Sprintf("alert-%d", a)
		for n, acc := range seen[id] {
			if want := "ACC" + fmt.Sprint(n); acc != want {
				t.Fatalf("%s event %d: got %s, want %s (per-alert order lost)", id, n, acc, want)
			}
		}
	}
}

func TestConsumerResumesAfterCommittedOffset(t *testing.T) {
	cfg := testConfig(t, 2)
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	ctx := context.Background()
	group := testinfra.UniqueName("group")
	for n := 0; n < 3; n++ {
		if err := w.Append(ctx, raised("a1", n)); err != nil {
			t.Fatal(err)
		}
	}
	first := newCollector(3)
	stop := consume(t, cfg, group, first.handle)
	first.wait(t)
	testinfra.WaitCommitted(t, cfg.Brokers, cfg.EventsTopic, 30*time.Second, group)
	stop()

	for n := 3; n < 5; n++ {
		if err := w.Append(ctx, raised("a1", n)); err != nil {
			t.Fatal(err)
		}
	}
	second := newCollector(2)
	stop = consume(t, cfg, group, second.handle)
	got := second.wait(t)
	// A record delivered again would come before the new ones (one alert:
	// one partition, in order), so once the group has committed the end,
	// anything redelivered has been handled.
	testinfra.WaitCommitted(t, cfg.Brokers, cfg.EventsTopic, 30*time.Second, group)
	stop()
	second.mu.Lock()
	defer second.mu.Unlock()
	if len(second.got) != 2 {
		t.Fatalf("after restart: got %d events, want exactly the 2 new ones", len(second.got))
	}
	if acc := got[0].Event.GetAlertRaised().GetDetails().GetAccession(); acc != "ACC3" {
		t.Fatalf("first event after restart: got %s, want ACC3", acc)
	}
}

func TestUndecodableAndPermanentGoToDeadLetterAndConsumerCarriesOn(t *testing.T) {
	cfg := testConfig(t, 1)
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	ctx := context.Background()
	if err := w.Put(ctx, cfg.EventsTopic, "a1", []byte{0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, raised("poison", 0), raised("a1", 1), raised("flaky", 2)); err != nil {
		t.Fatal(err)
	}
	flakyCalls := 0
	c := newCollector(2)
	stop := consume(t, cfg, testinfra.UniqueName("group"), func(ctx context.Context, d eventlog.Delivery) error {
		switch d.Event.AlertId {
		case "poison":
			return eventlog.Permanent(errors.New("alert references an unknown tenant"))
		case "flaky":
			flakyCalls++
			if flakyCalls < 3 {
				return errors.New("transient")
			}
		}
		return c.handle(ctx, d)
	})
	got := c.wait(t)
	stop()
	if got[0].Event.AlertId != "a1" || got[1].Event.AlertId != "flaky" {
		t.Fatalf("handled: got %s, %s, want a1, flaky", got[0].Event.AlertId, got[1].Event.AlertId)
	}

	var reasons []string
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: cfg.DLQTopic, Partition: 0})
	defer r.Close()
	for len(reasons) < 2 {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatalf("read dead-letter topic: got %d records (%v): %v", len(reasons), reasons, err)
		}
		for _, h := range m.Headers {
			if h.Key == eventlog.HeaderDLQReason {
				reasons = append(reasons, string(h.Value))
			}
		}
	}
	if want := "undecodable record"; len(reasons[0]) < len(want) || reasons[0][:len(want)] != want {
		t.Errorf("first dead letter reason: got %q, want it to start with %q", reasons[0], want)
	}
	if reasons[1] != "alert references an unknown tenant" {
		t.Errorf("second dead letter reason: got %q", reasons[1])
	}
}

func TestTraceContextTravelsInHeaders(t *testing.T) {
	cfg := testConfig(t, 1)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel := telemetry.New("test", tp, metricnoop.NewMeterProvider())
	w := eventlog.NewWriter(cfg, "test", tel)
	defer w.Close()

	ctx, root := tel.Tracer().Start(context.Background(), "intake")
	if err := w.Append(ctx, raised("a1", 0)); err != nil {
		t.Fatal(err)
	}
	root.End()

	c := newCollector(1)
	var handlerTrace string
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- eventlog.Consume(cctx, eventlog.ConsumerConfig{Config: cfg, GroupID: testinfra.UniqueName("g"), Telemetry: tel}, func(ctx context.Context, d eventlog.Delivery) error {
			handlerTrace = spanTrace(ctx)
			return c.handle(ctx, d)
		})
	}()
	c.wait(t)
	cancel()
	<-done
	if want := root.SpanContext().TraceID().String(); handlerTrace != want {
		t.Fatalf("handler trace: got %s, want the producer's %s", handlerTrace, want)
	}
	var consumeSpan bool
	for _, s := range rec.Ended() {
		if s.Name() == "consume AlertRaised" && s.Parent().TraceID() == root.SpanContext().TraceID() {
			consumeSpan = true
		}
	}
	if !consumeSpan {
		t.Fatal("no consume span in the producer's trace")
	}
}

func TestReadTopicReadsToTheEnd(t *testing.T) {
	cfg := testConfig(t, 3)
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		if err := w.Put(ctx, cfg.StateTopic, fmt.Sprintf("alert-%d", i%10), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	latest := map[string]string{}
	n := 0
	err := eventlog.ReadTopic(ctx, cfg, cfg.StateTopic, func(k, v []byte, _ int, _ int64) error {
		latest[string(k)] = string(v)
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 30 {
		t.Fatalf("records read: got %d, want 30", n)
	}
	if got := latest["alert-3"]; got != "23" {
		t.Fatalf("latest value of alert-3: got %s, want 23", got)
	}
}

func TestAppendToUnreachableBrokerIsUnavailable(t *testing.T) {
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = []string{testinfra.FreePort(t)}
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	// The writer gives up by itself after its attempts; the context only
	// keeps a writer that never gives up from hanging the test.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := w.Append(ctx, raised("a1", 0))
	// Consumers retry an outage (fault.ErrUnavailable) until it ends and
	// dead-letter other errors: an unreachable broker must be an outage.
	if !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("append to a closed port: got %v, want an error wrapping fault.ErrUnavailable", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || !contains(err.Error(), cfg.Brokers[0]) {
		t.Fatalf("append to a closed port: got %v, want the writer's own error naming %s", err, cfg.Brokers[0])
	}
}

func TestEnsureTopicsNamesUnreachableBrokers(t *testing.T) {
	cfg := eventlog.DefaultConfig()
	addr := testinfra.FreePort(t)
	cfg.Brokers = []string{addr}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := eventlog.EnsureTopics(ctx, cfg, logging.Discard())
	if err == nil || !contains(err.Error(), addr) {
		t.Fatalf("error: got %v, want one naming %s", err, addr)
	}
}

// ensureConcurrently runs EnsureTopics as n replicas starting at once do.
func ensureConcurrently(t *testing.T, cfg eventlog.Config, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make(chan error, n)
	for range n {
		go func() { errs <- eventlog.EnsureTopics(ctx, cfg, logging.Discard()) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("EnsureTopics: %v", err)
		}
	}
}

// requireTopicsAsDesigned checks that cfg's topics exist with cfg's
// partitions, the events and dead-letter topics keeping records forever
// and the state topic compacted.
func requireTopicsAsDesigned(t *testing.T, cfg eventlog.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: &kafka.Transport{}}
	for topic, want := range map[string]map[string]string{
		cfg.EventsTopic: {"cleanup.policy": "delete", "retention.ms": "-1"},
		cfg.DLQTopic:    {"cleanup.policy": "delete", "retention.ms": "-1"},
		cfg.StateTopic:  {"cleanup.policy": "compact"},
	} {
		meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil || len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
			t.Fatalf("metadata of %s: %v %+v", topic, err, meta)
		}
		if got := len(meta.Topics[0].Partitions); got != cfg.Partitions {
			t.Fatalf("%s: got %d partitions, want %d", topic, got, cfg.Partitions)
		}
		res, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic}}})
		if err != nil || len(res.Resources) != 1 {
			t.Fatalf("configs of %s: %v", topic, err)
		}
		got := map[string]string{}
		for _, e := range res.Resources[0].ConfigEntries {
			got[e.ConfigName] = e.ConfigValue
		}
		for name, value := range want {
			if got[name] != value {
				t.Fatalf("%s: %s is %q, want %q", topic, name, got[name], value)
			}
		}
	}
}

// Replicas start at once and each ensures the topics: every call succeeds
// whether it created a topic, lost the race to create it, or found it,
// and topics that exist are left as they are, records and all.
func TestEnsureTopicsIsIdempotent(t *testing.T) {
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = testinfra.KafkaBrokers(t)
	cfg.Partitions = 2
	cfg.EventsTopic = testinfra.UniqueName("events")
	cfg.DLQTopic = testinfra.UniqueName("dlq")
	cfg.StateTopic = testinfra.UniqueName("state")
	t.Cleanup(func() {
		c := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: &kafka.Transport{}}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{cfg.EventsTopic, cfg.DLQTopic, cfg.StateTopic}})
	})
	ensureConcurrently(t, cfg, 3) // none of the topics exists yet
	requireTopicsAsDesigned(t, cfg)

	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Append(ctx, raised("kept", 0)); err != nil {
		t.Fatal(err)
	}
	ensureConcurrently(t, cfg, 3) // every topic exists
	requireTopicsAsDesigned(t, cfg)
	n := 0
	if err := eventlog.ReadTopic(ctx, cfg, cfg.EventsTopic, func(key, _ []byte, _ int, _ int64) error {
		if string(key) == "kept" {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("records of the events topic after ensuring it again: got %d, want the 1 written before", n)
	}
}

func TestLanesHandleOtherAlertsWhileOneIsStuckAndCommitNoFurther(t *testing.T) {
	cfg := testConfig(t, 1)
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	ctx := context.Background()
	const alerts, perAlert = 6, 5
	appendRounds(t, w, alerts, perAlert)
	// The very first record (alert-0, event 0) is held until every record
	// on the other lanes is handled.
	stuck := "alert-0"
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[string][]string{}
	others := 0
	all := newCollector(alerts * perAlert)
	group := testinfra.UniqueName("group")
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- eventlog.Consume(runCtx, eventlog.ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard(), Lanes: 4},
			func(ctx context.Context, d eventlog.Delivery) error {
				id := d.Event.GetAlertId()
				if d.Offset == 0 {
					<-release
				}
				mu.Lock()
				seen[id] = append(seen[id], d.Event.GetAlertRaised().GetDetails().GetAccession())
				if id != stuck && d.Offset > 0 {
					others++
				}
				mu.Unlock()
				return all.handle(ctx, d)
			})
	}()
	// alert-0 shares its lane with some other alerts; wait until at least
	// two alerts' worth on the other lanes are handled.
	handledElsewhere := func() int {
		mu.Lock()
		defer mu.Unlock()
		return others
	}
	for end := time.Now().Add(60 * time.Second); handledElsewhere() < perAlert*2 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := handledElsewhere(); n < perAlert*2 {
		t.Fatalf("while alert-0's first event was held, only %d events of other alerts were handled; want the other lanes to carry on", n)
	}
	time.Sleep(300 * time.Millisecond) // a commit would have reached the broker by now
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: &kafka.Transport{}}
	committed := func() int64 {
		resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{cfg.EventsTopic: {0}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[cfg.EventsTopic][0].CommittedOffset
	}
	if off := committed(); off > 0 {
		t.Fatalf("committed offset %d while the record at offset 0 is still being handled", off)
	}
	close(release)
	all.wait(t)
	for a := range alerts {
		id := fmt.Sprintf("alert-%d", a)
		for i, acc := range seen[id] {
			if want := "ACC" + fmt.Sprint(i); acc != want {
				t.Fatalf("%s event %d: got %s, want %s (per-alert order lost)", id, i, acc, want)
			}
		}
	}
	want := int64(alerts * perAlert)
	for end := time.Now().Add(10 * time.Second); committed() != want && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	if off := committed(); off != want {
		t.Fatalf("committed offset after all were handled: got %d, want %d", off, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLanesLoseNothingAcrossARebalance(t *testing.T) {
	cfg := testConfig(t, 4)
	cfg.SessionTimeout = 6 * time.Second
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	ctx := context.Background()
	const alerts, perAlert = 40, 25
	appendRounds(t, w, alerts, perAlert)
	group := testinfra.UniqueName("group")
	var mu sync.Mutex
	handled := map[string]bool{} // "alert/n": event n of the alert was handled
	members := map[string]int{}  // records handled by each member
	total := 0
	member := func(name string) (stop func()) {
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- eventlog.Consume(mctx, eventlog.ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard(), Lanes: 4},
				func(_ context.Context, d eventlog.Delivery) error {
					time.Sleep(30 * time.Millisecond) // slow enough that the rebalances land mid-stream
					id := d.Event.GetAlertId()
					var n int
					_, _ = fmt.Sscanf(d.Event.GetAlertRaised().GetDetails().GetAccession(), "ACC%d", &n)
					mu.Lock()
					defer mu.Unlock()
					// At least once: a member may see an alert's earlier events
					// again after a rebalance. What must never happen is an
					// event handled before every earlier event of its alert.
					for k := range n {
						if !handled[fmt.Sprintf("%s/%d", id, k)] {
							t.Errorf("%s handled %s event %d before anyone handled event %d: per-alert order lost", name, id, n, k)
							break
						}
					}
					members[name]++
					handled[fmt.Sprintf("%s/%d", id, n)] = true
					total++
					return nil
				})
		}()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: Consume returned %v", name, err)
			}
		}
	}
	progress := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(handled), total
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(60 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(end) {
				n, _ := progress()
				t.Fatalf("%s: %d of %d records handled", what, n, alerts*perAlert)
			}
		}
	}
	stopA := member("a")
	waitFor("member a starts", func() bool { n, _ := progress(); return n >= 40 })
	stopB := member("b") // joins: the group rebalances while a is mid-stream
	waitFor("member b takes partitions", func() bool { mu.Lock(); defer mu.Unlock(); return members["b"] > 0 })
	stopA() // leaves: b takes every partition
	waitFor("every record handled", func() bool { n, _ := progress(); return n == alerts*perAlert })
	stopB()
	_, all := progress()
	t.Logf("%d records handled %d times in all (redeliveries after the rebalances: %d)", alerts*perAlert, all, all-alerts*perAlert)
}
