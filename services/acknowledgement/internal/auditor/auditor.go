// Package auditor keeps the audit trail on Kafka (package audit says what a
// record is). It runs in every acknowledgement replica, in two consumer
// groups of its own:
//
//   - forward (group "<group>-audit-forward"): reads the alert event log and
//     puts the entry of each audited event on the intake topic
//     (herald.audit-intake.v1), keyed by trust. Services that record reads of
//     patient data put their entries there too. Redelivery may put an entry
//     twice; that is harmless (below).
//   - chain (group "<group>-audit"): reads the intake, one partition at a
//     time in offset order, and appends each entry to its trust's chain on
//     herald.audit.v1, keyed by trust.
//
// Why it cannot fork: the intake is the one order of a trust's entries, and
// a trust's entries and records each live on one partition. Before chaining
// an entry the chainer reads, from the records topic, every record appended
// to the trust's partition since it last looked (by anyone: itself, a
// replica that held the partition before, a zombie still finishing), so it
// always builds on the chain's real head, and it skips an entry whose event
// is already chained. A record is a pure function of the head and the entry
// (no clock, no replica name), so two replicas that chain the same entry on
// the same head write the same bytes: a duplicate, which verification
// counts and accepts, never a fork. A crash between the append and the
// offset commit redelivers the entry, which is then found chained and
// skipped.
//
// Signatures (issue #20, item 7): every record the auditor writes (intake
// entries, chain records, anchors) is signed with acknowledgement's key by
// its Writer. The chainer takes an intake entry only when it is signed by
// a service that may write the intake (eventsign.TopicWriters; else it is
// dead-lettered with the reason, never chained), and builds only on chain
// records signed by acknowledgement; `heraldctl audit verify` reports an
// unsigned or wrongly signed record or anchor as forged.
//
// Anchors: every AnchorEvery (and at shutdown) the chainer writes the head
// of each chain it holds that moved since its last anchor to the anchor
// topic (herald.audit-anchors.v1) as an AuditAnchored event; `heraldctl
// audit anchor` writes one on demand.
package auditor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/telemetry"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

// Config configures an Auditor.
type Config struct {
	Log    eventlog.Config
	Topics audit.Topics
	// Group prefixes the consumer groups (the service's group).
	Group string
	// Producer names this replica in anchors.
	Producer string
	// BundleTopic, when set, is rules' topic of policy bundle events,
	// forwarded like the log's once it exists (group "<group>-audit-bundles").
	BundleTopic string
	// AnchorEvery is how often moved chain heads are anchored.
	AnchorEvery time.Duration
	Logger      *slog.Logger
	Telemetry   *telemetry.Telemetry
	Clock       clock.Clock
	// AfterAppend, when set, is called after a record is durably appended
	// and before its entry is committed (tests inject a crash there); its
	// error is returned by the handler.
	AfterAppend func(ctx context.Context, rec *auditv1.AuditRecord) error
}

// Auditor forwards audited events to the intake and chains the intake.
type Auditor struct {
	cfg    Config
	writer *eventlog.Writer
	reader *eventlog.PartitionReader

	nparts int
	mu     sync.Mutex
	parts  map[int]*partition
}

// partition is what the chainer knows of one partition of the records
// topic: the chains of its trusts, read up to next.
type partition struct {
	mu       sync.Mutex
	next     int64
	chains   map[string]*audit.Chain
	anchored map[string]uint64
}

// New ensures the audit topics and returns an auditor writing with writer.
func New(ctx context.Context, cfg Config, writer *eventlog.Writer) (*Auditor, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.AnchorEvery <= 0 {
		cfg.AnchorEvery = time.Minute
	}
	if err := eventlog.EnsureTopicSpecs(ctx, cfg.Log, cfg.Topics.Specs(cfg.Log), cfg.Logger); err != nil {
		return nil, fmt.Errorf("ensure audit topics: %w", err)
	}
	reader := eventlog.NewPartitionReader(cfg.Log, cfg.Topics.Records)
	// A record of the chain not signed by acknowledgement (appended by
	// another principal that may write the topic, or with a stolen key
	// since removed from the set) is not built on: logged and counted.
	if err := reader.Verifying(eventlog.ReadOptions{Role: eventsign.TopicAuditRecords, Path: PathCatchUp}); err != nil {
		reader.Close()
		return nil, err
	}
	n, err := reader.Partitions(ctx)
	if err != nil {
		reader.Close()
		return nil, fmt.Errorf("read partitions of %s: %w", cfg.Topics.Records, err)
	}
	return &Auditor{cfg: cfg, writer: writer, reader: reader, nparts: n, parts: map[int]*partition{}}, nil
}

// Close releases the auditor's reader (not the writer, which it borrowed).
func (a *Auditor) Close() { a.reader.Close() }

// Run consumes the log and the intake and anchors until ctx is done; it
// anchors once more on the way out.
func (a *Auditor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		errs <- eventlog.Consume(ctx, eventlog.ConsumerConfig{Config: a.cfg.Log, GroupID: a.cfg.Group + "-audit-forward",
			Logger: a.cfg.Logger, Telemetry: a.cfg.Telemetry, MaxBackoff: time.Second, Lanes: 8, Ignore: notAudited}, a.Forward)
	})
	wg.Go(func() {
		errs <- eventlog.Consume(ctx, eventlog.ConsumerConfig{Config: a.cfg.Log, GroupID: a.cfg.Group + "-audit",
			Topic: a.cfg.Topics.Intake, Raw: true, RawRole: eventsign.TopicAuditIntake, Logger: a.cfg.Logger, Telemetry: a.cfg.Telemetry, MaxBackoff: time.Second}, a.Chain)
	})
	if a.cfg.BundleTopic != "" {
		wg.Go(func() { a.forwardBundles(ctx) })
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.cfg.Clock.After(a.cfg.AnchorEvery):
				if err := a.Anchor(ctx, "periodic"); err != nil && ctx.Err() == nil {
					a.cfg.Logger.Warn("anchor audit chains", "error", err)
				}
			}
		}
	})
	wg.Wait()
	close(errs)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := a.Anchor(sctx, "periodic"); err != nil {
		a.cfg.Logger.Warn("anchor audit chains at shutdown", "error", err)
	}
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// notAudited says which events Forward passes over (no entry): the
// consumer commits them without checking their signature, which the
// groups that apply them check. Audited ones are verified before they are
// chained, so a forged command never enters the trail.
func notAudited(ev *eventsv1.Event) bool {
	_, ok := audit.EntryOf(ev)
	return !ok
}

// Forward is the handler of the event log: it puts the entry of an audited
// event on the intake.
func (a *Auditor) Forward(ctx context.Context, d eventlog.Delivery) error {
	rec, ok := audit.EntryOf(d.Event)
	if !ok {
		return nil
	}
	return a.Submit(ctx, rec)
}

// forwardBundles forwards rules' policy bundle events once their topic
// exists (rules creates it; the auditor must not create it with another
// shape), looking again every AnchorEvery until then.
func (a *Auditor) forwardBundles(ctx context.Context) {
	for !a.topicExists(ctx, a.cfg.BundleTopic) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.AnchorEvery):
		}
	}
	err := eventlog.Consume(ctx, eventlog.ConsumerConfig{Config: a.cfg.Log, GroupID: a.cfg.Group + "-audit-bundles", Topic: a.cfg.BundleTopic,
		Logger: a.cfg.Logger, Telemetry: a.cfg.Telemetry, MaxBackoff: time.Second}, a.Forward)
	if err != nil {
		a.cfg.Logger.Error("forward policy bundle events to the audit trail", "topic", a.cfg.BundleTopic, "error", err)
	}
}

func (a *Auditor) topicExists(ctx context.Context, topic string) bool {
	client, closeIdle := a.cfg.Log.Client(10 * time.Second)
	defer closeIdle()
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return false
	}
	for _, t := range meta.Topics {
		if t.Name == topic && t.Error == nil && len(t.Partitions) > 0 {
			return true
		}
	}
	return false
}

// PathCatchUp is the path (herald_events_refused_total) of the chainer's
// read of its records topic.
const PathCatchUp = "audit_catch_up"

// Submit puts an entry on the intake (audit.Submit).
func (a *Auditor) Submit(ctx context.Context, entry *auditv1.AuditRecord) error {
	return audit.Submit(ctx, a.writer, a.cfg.Topics.Intake, entry)
}

// Chain is the handler of the intake: it appends the entry to its trust's
// chain unless the chain already holds its event.
func (a *Auditor) Chain(ctx context.Context, d eventlog.Delivery) error {
	var entry auditv1.AuditEntry
	if err := proto.Unmarshal(d.Value, &entry); err != nil {
		return eventlog.Permanent(fmt.Errorf("decode audit entry: %w", err))
	}
	rec := entry.GetRecord()
	trust := rec.GetTrust()
	if trust == "" || rec.GetEventId() == "" {
		return eventlog.Permanent(errors.New("audit entry without trust or event id"))
	}
	pn := a.partitionOf(trust)
	p := a.partition(pn)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := a.catchUp(ctx, pn, p); err != nil {
		return err
	}
	ch := p.chain(trust)
	if ch.Chained(rec.GetEventId()) {
		return nil
	}
	next := ch.Next(rec)
	b, err := proto.Marshal(next)
	if err != nil {
		return eventlog.Permanent(fmt.Errorf("encode audit record: %w", err))
	}
	if err := a.writer.Put(ctx, a.cfg.Topics.Records, trust, b,
		kafka.Header{Key: eventlog.HeaderEventID, Value: []byte(audit.RecordID(trust, rec.GetEventId()))}); err != nil {
		return fmt.Errorf("append audit record %d of %s: %w", next.GetSequence(), trust, err)
	}
	if a.cfg.AfterAppend != nil {
		if err := a.cfg.AfterAppend(ctx, next); err != nil {
			return err
		}
	}
	ch.Follow(next)
	return nil
}

// catchUp reads what the records partition holds past p.next into the
// chains. A record that neither follows its chain nor repeats a record of
// it is left out (the chain goes on from its head) and logged: `heraldctl
// audit verify` names it.
func (a *Auditor) catchUp(ctx context.Context, pn int, p *partition) error {
	first, end, err := a.reader.Bounds(ctx, pn)
	if err != nil {
		return fmt.Errorf("read the end of %s/%d: %w", a.cfg.Topics.Records, pn, err)
	}
	from := max(p.next, first)
	if end <= from {
		return nil
	}
	err = a.reader.Read(ctx, pn, from, end, func(_, value []byte, _ int, offset int64) error {
		var rec auditv1.AuditRecord
		if err := proto.Unmarshal(value, &rec); err != nil {
			a.cfg.Logger.Error("undecodable audit record", "partition", pn, "offset", offset, "error", err)
			return nil
		}
		ch := p.chain(rec.GetTrust())
		if !ch.Follow(&rec) && rec.GetSequence() > ch.Sequence {
			a.cfg.Logger.Error("audit record does not follow its chain", "trust", rec.GetTrust(), "sequence", rec.GetSequence(),
				"head", ch.Sequence, "partition", pn, "offset", offset)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s/%d: %w", a.cfg.Topics.Records, pn, err)
	}
	p.next = end
	return nil
}

func (a *Auditor) partitionOf(trust string) int {
	parts := make([]int, a.nparts)
	for i := range parts {
		parts[i] = i
	}
	return (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(trust)}, parts...)
}

func (a *Auditor) partition(n int) *partition {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.parts[n]
	if p == nil {
		p = &partition{chains: map[string]*audit.Chain{}, anchored: map[string]uint64{}}
		a.parts[n] = p
	}
	return p
}

func (p *partition) chain(trust string) *audit.Chain {
	c := p.chains[trust]
	if c == nil {
		c = audit.NewChain(trust)
		p.chains[trust] = c
	}
	return c
}

// Anchor writes the head of every chain this replica holds that moved
// since its last anchor.
func (a *Auditor) Anchor(ctx context.Context, reason string) error {
	a.mu.Lock()
	parts := make([]*partition, 0, len(a.parts))
	for _, p := range a.parts {
		parts = append(parts, p)
	}
	a.mu.Unlock()
	for _, p := range parts {
		p.mu.Lock()
		var events []*eventsv1.Event
		var heads []*audit.Chain
		for trust, ch := range p.chains {
			if ch.Sequence > p.anchored[trust] {
				events = append(events, audit.AnchorEvent(ch.Trust, ch.Sequence, ch.Head, reason, a.cfg.Producer, a.cfg.Clock.Now()))
				heads = append(heads, ch)
			}
		}
		p.mu.Unlock()
		if err := PutAnchors(ctx, a.writer, a.cfg.Topics.Anchors, events...); err != nil {
			return err
		}
		p.mu.Lock()
		for i, ch := range heads {
			p.anchored[ch.Trust] = max(p.anchored[ch.Trust], events[i].GetAuditAnchored().GetSequence())
		}
		p.mu.Unlock()
	}
	return nil
}

// PutAnchors writes anchor events to topic, keyed by trust.
func PutAnchors(ctx context.Context, w *eventlog.Writer, topic string, events ...*eventsv1.Event) error {
	if len(events) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, 0, len(events))
	for _, ev := range events {
		b, err := proto.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode anchor of %s: %w", ev.GetTenant(), err)
		}
		msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(ev.GetTenant()), Value: b, Headers: []kafka.Header{
			{Key: eventlog.HeaderEventType, Value: []byte("AuditAnchored")}, {Key: eventlog.HeaderEventID, Value: []byte(ev.GetEventId())}}})
	}
	if err := w.PutMany(ctx, msgs...); err != nil {
		return fmt.Errorf("write %d anchors: %w", len(msgs), err)
	}
	return nil
}
