package eventlog

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Delivery is one decoded record handed to a Handler.
type Delivery struct {
	Event     *eventsv1.Event
	Type      string
	Topic     string
	Partition int
	Offset    int64
	Headers   []kafka.Header
	// Key and Value are the record as read; with ConsumerConfig.Raw, Value
	// is not decoded and Event is nil.
	Key   []byte
	Value []byte
}

// Handler handles one event. It must be idempotent: the same event may be
// delivered more than once. The context carries the trace context from the
// record's headers (start spans from it).
//
// Returning nil commits the record. An error wrapping fault.ErrUnavailable
// (an outage: Kafka, Redis, a peer service) is retried with capped backoff
// until it succeeds or the consumer stops, since the record is fine and
// dead-lettering it would lose work. An error marked Permanent sends the
// record to the dead-letter topic at once. Any other error is retried up to
// MaxAttempts times and then dead-lettered with the reason.
type Handler func(ctx context.Context, d Delivery) error

// BatchHandler handles a run of records that were ready together in one
// lane of a partition (ConsumerConfig.Batch), in offset order, so that the
// run can share its round trips: one Redis pipeline, one produce request.
// It must apply the records as the Handler would, one after another in
// order (a later record of an alert sees what an earlier one did), and be
// idempotent like it. It may stop anywhere: returning nil settles the whole
// run; an error settles none of it, and each record of the run then goes
// through the Handler with its usual retry and dead-letter policy (records
// the run already applied are applied again, which idempotence makes
// harmless). A run is never committed before it is settled.
type BatchHandler func(ctx context.Context, run []Delivery) error

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix.
func Permanent(err error) error { return permanentError{err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// ConsumerConfig configures Consume.
type ConsumerConfig struct {
	Config
	// GroupID is the consumer group: one per service.
	GroupID string
	// Topic to consume; the events topic when empty.
	Topic     string
	Logger    *slog.Logger
	Telemetry *telemetry.Telemetry
	// MaxAttempts for errors that are neither outages nor permanent.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound retry waits.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// StartAtEnd makes a group with no committed offsets start at the end of
	// the topic (tools that follow the log) instead of the beginning
	// (services, which must see every event).
	StartAtEnd bool
	// Lanes is how many records of one partition may be handled at once
	// (default 1: strictly in offset order). With more than one, records are
	// spread over the lanes by key (the alert id), so the events of one
	// alert keep their order while different alerts proceed side by side.
	// The handler must then not rely on partition order across keys.
	// Offsets are still committed only up to the first record not yet
	// handled.
	Lanes int
	// FetchLinger is how long the consumer waits after a fetch that
	// brought several records before it fetches again, so that under load
	// one fetch carries many records (default 3 ms; negative: no wait). A
	// record after a quiet spell is not delayed. At 1,000 alerts/s, 3 ms
	// instead of 1 ms cut the fetch requests by 30% and the broker's CPU by
	// 10%, for 0.1-0.2 ms on the median at 100 alerts/s
	// (docs/performance.md, round 6).
	FetchLinger time.Duration
	// Raw hands records to the handler undecoded (Delivery.Value): for
	// topics whose records are not herald.events.v1.Event (the audit
	// intake). Nothing is dead-lettered for its shape then; with a key set
	// a record must still be signed by a key of it, of a service that may
	// write the topic of RawRole (eventsign.TopicWriters) when set, or it
	// is dead-lettered with the reason.
	Raw     bool
	RawRole string
	// Ignore, when set, says which decoded events the handler would do
	// nothing with: they are committed without being verified or handled.
	// A group that applies only some events (the auditor, which records
	// commands) spares the signature check of the rest; the groups that
	// apply them still verify them and dead-letter a forgery.
	Ignore func(*eventsv1.Event) bool
	// Batch, when set, handles each run of two or more records that are
	// ready at once in a lane (up to maxRun; see BatchHandler); a record
	// alone still goes to the Handler. At low rates a run is one record,
	// and nothing changes.
	Batch BatchHandler
	// transport replaces the Kafka transport of fetches (tests).
	transport kafka.RoundTripper
	// commitOffsets replaces gen.CommitOffsets (tests inject failures).
	commitOffsets func(gen *kafka.Generation, offsets map[string]map[int]int64) error
}

// defaultFetchLinger is ConsumerConfig.FetchLinger's default.
const defaultFetchLinger = 3 * time.Millisecond

func (c *ConsumerConfig) defaults() {
	if c.Topic == "" {
		c.Topic = c.EventsTopic
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 50 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.Lanes <= 0 {
		c.Lanes = 1
	}
	if c.FetchLinger == 0 {
		c.FetchLinger = defaultFetchLinger
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Telemetry == nil {
		c.Telemetry = telemetry.Nop(c.GroupID)
	}
}

// Consume reads the topic as a member of the consumer group until ctx is
// done. Records of one partition are handled in order (per key when
// cfg.Lanes > 1); partitions are handled in parallel. Offsets are
// committed after handling (at least once). It returns nil when ctx is
// cancelled.
func Consume(ctx context.Context, cfg ConsumerConfig, h Handler) error {
	cfg.defaults()
	if cfg.GroupID == "" {
		return errors.New("consume: a consumer group id is required")
	}
	if cfg.obsLog == nil {
		cfg.Config = cfg.Config.Observed(cfg.Logger, cfg.Telemetry)
	}
	verifier, err := NewVerifier(cfg.Config)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	keys, err := cfg.keys()
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                cfg.GroupID,
		Brokers:           cfg.Brokers,
		Topics:            []string{cfg.Topic},
		HeartbeatInterval: HeartbeatInterval(cfg.SessionTimeout),
		SessionTimeout:    cfg.SessionTimeout,
		RebalanceTimeout:  cfg.SessionTimeout,
		JoinGroupBackoff:  200 * time.Millisecond,
		Dialer:            cfg.dialer("herald-" + cfg.GroupID),
		StartOffset:       startOffset(cfg.StartAtEnd),
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			cfg.Logger.Warn("kafka consumer group", "detail", fmt.Sprintf(msg, args...), "group", cfg.GroupID)
		}),
	})
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	dlqTransport := cfg.newTransport("herald-" + cfg.GroupID + "-dlq")
	defer dlqTransport.CloseIdleConnections()
	dlq := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Transport:    dlqTransport,
		Topic:        cfg.DLQTopic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
	}
	transport := cfg.transport
	if transport == nil {
		t := cfg.newTransport("herald-" + cfg.GroupID)
		defer t.CloseIdleConnections()
		transport = t
	}
	c := &consumer{cfg: cfg, transport: transport, addr: kafka.TCP(cfg.Brokers...), dlq: dlq, handler: h, verifier: verifier, keys: keys}
	c.metrics()
	c.run(ctx, group)
	if closeErr := errors.Join(group.Close(), dlq.Close()); closeErr != nil {
		cfg.Logger.Warn("close consumer", "group", cfg.GroupID, "error", closeErr)
	}
	return nil
}

type consumer struct {
	cfg       ConsumerConfig
	transport kafka.RoundTripper
	addr      net.Addr
	dlq       *kafka.Writer
	handler   Handler
	// verifier refuses records not signed by a service that may produce
	// them (nil: every record is accepted, a development system).
	verifier *Verifier
	// keys signs what the consumer dead-letters (nil: unsigned).
	keys *eventsign.Source

	handled  metric.Int64Counter
	dlqCount metric.Int64Counter
	retries  metric.Int64Counter
	// abandoned counts handlers cut short by the end of a generation.
	abandoned metric.Int64Counter
}

func (c *consumer) metrics() {
	m := c.cfg.Telemetry.Meter()
	c.handled, _ = m.Int64Counter("herald_events_handled_total", metric.WithDescription("events handled by a consumer group"))
	c.dlqCount, _ = m.Int64Counter("herald_events_dead_lettered_total", metric.WithDescription("records sent to the dead-letter topic"))
	c.retries, _ = m.Int64Counter("herald_events_retries_total", metric.WithDescription("handler retries"))
	c.abandoned, _ = m.Int64Counter("herald_events_abandoned_total", metric.WithDescription("handlers cut short by a rebalance or shutdown (their records are redelivered)"))
}

// run takes part in the group's generations until ctx is done.
func (c *consumer) run(ctx context.Context, group *kafka.ConsumerGroup) {
	backoff := c.cfg.MinBackoff
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.cfg.Logger.Warn("join consumer group", "brokers", c.cfg.Brokers, "group", c.cfg.GroupID, "topic", c.cfg.Topic, "error", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, c.cfg.MaxBackoff)
			continue
		}
		backoff = c.cfg.MinBackoff
		done := make(chan struct{})
		gen.Start(func(gctx context.Context) {
			defer close(done)
			gctx, cancel := context.WithCancel(gctx)
			defer cancel()
			defer context.AfterFunc(ctx, cancel)()
			c.generation(gctx, gen)
		})
		<-done
		if ctx.Err() != nil {
			return
		}
	}
}

// partition is what a generation keeps for one of its partitions: the
// window of records in hand and the lanes that handle them. The fetcher
// hands each record straight to its lane (one goroutine hand-off per
// record; there used to be a partition worker between them, a second
// hand-off and a second thread wake-up for every record at low rates).
type partition struct {
	w     window
	lanes []chan *pending
}

// partitionQueue bounds the records of a partition in hand (fetched, not
// yet committed-ready): a partition is fetched only while at most half of
// that is in hand, and a fetched record that finds it full (or its lane's
// queue full) is left for a later fetch, so one partition or lane whose
// handler is slow never holds up the records of the others (head-of-line
// blocking: with a blocking hand-off, a consumer that fell behind handled
// one partition at a time and could not catch up).
const partitionQueue = 512

// maxRun bounds the records handed to a BatchHandler at once.
const maxRun = 64

// startPartition starts the lanes of a partition; they run until ctx is done.
func (c *consumer) startPartition(ctx context.Context, wg *sync.WaitGroup, commit func(kafka.Message)) *partition {
	pt := &partition{lanes: make([]chan *pending, c.cfg.Lanes)}
	for i := range pt.lanes {
		pt.lanes[i] = make(chan *pending, partitionQueue)
		wg.Go(func() { c.lane(ctx, pt.lanes[i], &pt.w, commit) })
	}
	return pt
}

// ready reports whether the partition has room for a fetch's records.
func (pt *partition) ready() bool { return pt.w.len() <= partitionQueue/2 }

// offer hands m to its lane (chosen by its key, so the records of one key
// keep their order) unless the partition or the lane is full; only the
// fetcher of the partition calls it.
func (pt *partition) offer(m kafka.Message) bool {
	if pt.w.len() >= partitionQueue {
		return false
	}
	p := pt.w.add(m)
	select {
	case pt.lanes[laneOf(m.Key, len(pt.lanes))] <- p:
		return true
	default:
		pt.w.drop(p)
		return false
	}
}

// lane handles its records in order: one at a time, or, with a
// BatchHandler, each run of records already waiting together. After each
// record the last record of the partition's run handled without a gap
// goes to commit.
func (c *consumer) lane(ctx context.Context, in <-chan *pending, w *window, commit func(kafka.Message)) {
	run := make([]*pending, 0, maxRun)
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-in:
			run = append(run[:0], p)
		}
		if c.cfg.Batch != nil {
		fill:
			for len(run) < maxRun {
				select {
				case p := <-in:
					run = append(run, p)
				default:
					break fill
				}
			}
		}
		if !c.handleRun(ctx, run) {
			return
		}
		w.done(commit, run...)
		clear(run)
	}
}

func laneOf(key []byte, n int) int {
	if n == 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int(h.Sum32() % uint32(n))
}

// pending is a record of a partition on its way through a lane.
type pending struct {
	m    kafka.Message
	done bool
}

// window holds a partition's records in offset order until they and every
// record before them are handled, so the committed offset never passes a
// record still in hand.
type window struct {
	mu   sync.Mutex
	recs []*pending
}

func (w *window) add(m kafka.Message) *pending {
	p := &pending{m: m}
	w.mu.Lock()
	w.recs = append(w.recs, p)
	w.mu.Unlock()
	return p
}

// drop takes back p, the last record added, which no lane took.
func (w *window) drop(p *pending) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.recs); n > 0 && w.recs[n-1] == p {
		w.recs[n-1] = nil
		w.recs = w.recs[:n-1]
	}
}

func (w *window) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.recs)
}

// done marks ps handled and calls commit with the last record of the
// handled run at the front of the window, if the run grew. commit is called
// under the window's lock, so commits go out in offset order.
func (w *window) done(commit func(kafka.Message), ps ...*pending) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range ps {
		p.done = true
	}
	n := 0
	for n < len(w.recs) && w.recs[n].done {
		n++
	}
	if n == 0 {
		return
	}
	last := w.recs[n-1].m
	clear(w.recs[:n])
	w.recs = w.recs[n:]
	commit(last)
}

// handle runs the handler with the retry policy. It returns false only when
// ctx ended before the record was settled (it will be redelivered).
func (c *consumer) handle(ctx context.Context, m kafka.Message) bool {
	d, settled, ok := c.prepare(ctx, m)
	if settled {
		return ok
	}
	return c.apply(ctx, d)
}

// delivery is a record ready for its handler, with the trace context its
// headers carry.
type delivery struct {
	Delivery
	ctx context.Context
}

// prepare decodes and verifies m. settled is true when m needs no handler
// (ignored, or dead-lettered: undecodable, not a herald event, refused for
// its signature); ok is then false when ctx ended before a dead-letter was
// durable.
func (c *consumer) prepare(ctx context.Context, m kafka.Message) (d delivery, settled, ok bool) {
	var ev *eventsv1.Event
	typ := "raw"
	if !c.cfg.Raw {
		ev = &eventsv1.Event{}
		if err := proto.Unmarshal(m.Value, ev); err != nil {
			return d, true, c.deadLetter(ctx, m, fmt.Sprintf("undecodable record: %v", err))
		}
		typ = TypeOf(ev)
		if ev.GetEventId() == "" || typ == "" {
			return d, true, c.deadLetter(ctx, m, "record is not a herald event: missing event id or payload")
		}
		if c.cfg.Ignore != nil && c.cfg.Ignore(ev) {
			return d, true, true
		}
		// A forged record (unsigned, signed by an unknown key, altered, or
		// signed by a service that may not produce its type) is never
		// handled: it goes to the dead-letter topic with the reason.
		if err := c.verifier.Check(m.Topic, m.Key, m.Value, m.Headers, ev); err != nil {
			c.verifier.Refused(ctx, Refusal{Path: PathConsume, Group: c.cfg.GroupID, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Event: ev}, err)
			return d, true, c.deadLetter(ctx, m, err.Error())
		}
	} else if c.verifier != nil {
		check := c.verifier.Check(m.Topic, m.Key, m.Value, m.Headers, nil)
		if c.cfg.RawRole != "" {
			check = c.verifier.CheckOn(c.cfg.RawRole, m.Topic, m.Key, m.Value, m.Headers)
		}
		if check != nil {
			c.verifier.Refused(ctx, Refusal{Path: PathConsume, Group: c.cfg.GroupID, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}, check)
			return d, true, c.deadLetter(ctx, m, check.Error())
		}
	}
	headers := m.Headers
	d.ctx = c.cfg.Telemetry.Propagator.Extract(ctx, HeaderCarrier{Headers: &headers})
	d.Delivery = Delivery{Event: ev, Type: typ, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Headers: m.Headers, Key: m.Key, Value: m.Value}
	return d, false, true
}

// apply runs the handler on d with the retry policy. It returns false only
// when ctx ended before the record was settled (it will be redelivered).
func (c *consumer) apply(ctx context.Context, d delivery) bool {
	pctx, ev, typ := d.ctx, d.Event, d.Type
	attrs := metric.WithAttributes(attribute.String("group", c.cfg.GroupID), attribute.String("event_type", typ))
	m := kafka.Message{Topic: d.Topic, Partition: d.Partition, Offset: d.Offset, Key: d.Key, Value: d.Value, Headers: d.Headers}
	backoff := c.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := c.handleOnce(pctx, d.Delivery)
		if err == nil {
			c.handled.Add(ctx, 1, attrs)
			return true
		}
		if ctx.Err() != nil {
			// The generation ended (a rebalance, a shutdown) while the
			// handler was at work, and it did not finish: its record stays
			// uncommitted, and this partition's next owner handles it again
			// from the start. Said out loud, because what the handler did
			// not do (arm a timer, append a reaction) is done only then.
			c.abandoned.Add(context.WithoutCancel(ctx), 1, attrs)
			c.cfg.Logger.WarnContext(context.WithoutCancel(pctx), "handler stopped before it finished; the record is left for redelivery",
				"group", c.cfg.GroupID, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
				"alert_id", ev.GetAlertId(), "event_type", typ, "attempt", attempt, "error", err)
			return false
		}
		switch {
		case IsPermanent(err):
			return c.deadLetter(ctx, m, err.Error())
		case errors.Is(err, fault.ErrUnavailable):
			c.cfg.Logger.WarnContext(pctx, "handler waits for a dependency", "group", c.cfg.GroupID, "alert_id", ev.GetAlertId(), "event_type", typ, "attempt", attempt, "error", err)
		case attempt >= c.cfg.MaxAttempts:
			return c.deadLetter(ctx, m, fmt.Sprintf("gave up after %d attempts: %v", attempt, err))
		default:
			c.cfg.Logger.WarnContext(pctx, "handler failed; retrying", "group", c.cfg.GroupID, "alert_id", ev.GetAlertId(), "event_type", typ, "attempt", attempt, "error", err)
		}
		c.retries.Add(ctx, 1, attrs)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// handleRun settles the records of run, in order: through the
// BatchHandler when there is one and two or more records need handling,
// else (and when the run fails) one by one through handle. It returns false
// only when ctx ended before every record was settled.
func (c *consumer) handleRun(ctx context.Context, run []*pending) bool {
	if c.cfg.Batch == nil || len(run) == 1 {
		for _, p := range run {
			if !c.handle(ctx, p.m) {
				return false
			}
		}
		return true
	}
	ds := make([]delivery, 0, len(run))
	for _, p := range run {
		d, settled, ok := c.prepare(ctx, p.m)
		if !ok {
			return false
		}
		if !settled {
			ds = append(ds, d)
		}
	}
	if len(ds) == 1 {
		return c.apply(ctx, ds[0])
	}
	if len(ds) == 0 {
		return true
	}
	err := c.handleBatch(ctx, ds)
	if err == nil {
		for _, d := range ds {
			c.handled.Add(ctx, 1, metric.WithAttributes(attribute.String("group", c.cfg.GroupID), attribute.String("event_type", d.Type)))
		}
		return true
	}
	if ctx.Err() != nil {
		c.abandoned.Add(context.WithoutCancel(ctx), int64(len(ds)), metric.WithAttributes(attribute.String("group", c.cfg.GroupID), attribute.String("event_type", "run")))
		c.cfg.Logger.Warn("run of records stopped before it finished; the records are left for redelivery",
			"group", c.cfg.GroupID, "topic", ds[0].Topic, "partition", ds[0].Partition, "from_offset", ds[0].Offset, "records", len(ds), "error", err)
		return false
	}
	// The run failed as a whole: each record gets the usual policy (an
	// outage is waited out, a bad record dead-lettered alone).
	c.cfg.Logger.Warn("run of records failed; handling them one by one",
		"group", c.cfg.GroupID, "topic", ds[0].Topic, "partition", ds[0].Partition, "from_offset", ds[0].Offset, "records", len(ds), "error", err)
	for _, d := range ds {
		if !c.apply(ctx, d) {
			return false
		}
	}
	return true
}

// handleBatch calls the BatchHandler once on ds, in a span linked to each
// record's trace.
func (c *consumer) handleBatch(ctx context.Context, ds []delivery) (err error) {
	run := make([]Delivery, len(ds))
	links := make([]trace.Link, 0, len(ds))
	for i, d := range ds {
		run[i] = d.Delivery
		if sc := trace.SpanContextFromContext(d.ctx); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	ctx, span := c.cfg.Telemetry.Tracer().Start(ctx, "consume run", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.destination.name", ds[0].Topic),
			attribute.String("messaging.consumer.group.name", c.cfg.GroupID),
			attribute.Int("messaging.destination.partition.id", ds[0].Partition),
			attribute.Int64("messaging.kafka.offset", ds[0].Offset),
			attribute.Int("messaging.batch.message_count", len(ds)),
		))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("batch handler panicked: %v", r)
		}
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	return c.cfg.Batch(ctx, run)
}

func (c *consumer) handleOnce(ctx context.Context, d Delivery) (err error) {
	ctx, span := c.cfg.Telemetry.Tracer().Start(ctx, "consume "+d.Type, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.destination.name", d.Topic),
			attribute.String("messaging.consumer.group.name", c.cfg.GroupID),
			attribute.Int("messaging.destination.partition.id", d.Partition),
			attribute.Int64("messaging.kafka.offset", d.Offset),
			attribute.String("herald.alert_id", d.Event.GetAlertId()),
			attribute.String("herald.tenant", d.Event.GetTenant()),
			attribute.String("herald.event_type", d.Type),
		))
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panicked: %v", r))
		}
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	return c.handler(ctx, d)
}

// deadLetter writes the record to the dead-letter topic with the reason,
// retrying until it is durable or ctx ends: the record must not be lost.
// The dead-lettering service signs it for the dead-letter topic (the
// record's own signature, over its own topic, is kept in
// eventsign.HeaderOriginalSignature), so a reader of the dead letters can
// tell Herald's from a record put there by anyone else.
func (c *consumer) deadLetter(ctx context.Context, m kafka.Message, reason string) bool {
	headers := make([]kafka.Header, 0, len(m.Headers)+3)
	for _, h := range m.Headers {
		if h.Key == eventsign.HeaderSignature {
			h.Key = eventsign.HeaderOriginalSignature
		}
		headers = append(headers, h)
	}
	headers = append(headers,
		kafka.Header{Key: HeaderDLQReason, Value: []byte(reason)},
		kafka.Header{Key: HeaderDLQSource, Value: []byte(m.Topic + "/" + strconv.Itoa(m.Partition) + "/" + strconv.FormatInt(m.Offset, 10) + "/" + c.cfg.GroupID)},
	)
	dead := kafka.Message{Key: m.Key, Value: m.Value, Headers: headers}
	if signer := signerOf(c.keys); signer != nil {
		dead.Topic = c.cfg.DLQTopic
		sign(signer, &dead)
		dead.Topic = "" // the writer names the topic
	}
	backoff := c.cfg.MinBackoff
	for {
		err := c.dlq.WriteMessages(ctx, dead)
		if err == nil {
			c.dlqCount.Add(ctx, 1, metric.WithAttributes(attribute.String("group", c.cfg.GroupID)))
			c.cfg.Logger.Error("record dead-lettered", "group", c.cfg.GroupID, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "reason", reason)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.cfg.Logger.Warn("write to dead-letter topic", "topic", c.cfg.DLQTopic, "error", err)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

func startOffset(atEnd bool) int64 {
	if atEnd {
		return kafka.LastOffset
	}
	return kafka.FirstOffset
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
