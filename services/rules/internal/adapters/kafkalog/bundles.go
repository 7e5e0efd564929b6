package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// BundleTopic is the policy-bundle topic: the durable record of policy
// changes (BundleProposed, BundleReviewed in the Event envelope, keyed by
// tenant). It has one partition, so every replica reads the changes of all
// trusts in one order.
type BundleTopic struct {
	reader *Reader
	writer *eventlog.Writer
	topic  string
}

// NewBundleTopic returns the topic's reader and appender over writer (the
// service's event writer; Put writes to any topic).
func NewBundleTopic(cfg eventlog.Config, topic string, writer *eventlog.Writer) (*BundleTopic, func()) {
	r, closeIdle := New(cfg, topic)
	return &BundleTopic{reader: r, writer: writer, topic: topic}, closeIdle
}

// Append writes ev, keyed by its tenant, and returns once it is durable
// (acks=all). An error wraps fault.ErrUnavailable when it may be retried.
func (b *BundleTopic) Append(ctx context.Context, ev *eventsv1.Event) error {
	if ev.GetEventId() == "" || ev.GetTenant() == "" {
		return fmt.Errorf("append %s: event id and tenant are required", eventlog.TypeOf(ev))
	}
	if ev.SchemaVersion == 0 {
		ev.SchemaVersion = eventlog.SchemaVersion
	}
	value, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", ev.GetEventId(), err)
	}
	return b.writer.Put(ctx, b.topic, ev.GetTenant(), value,
		kafka.Header{Key: eventlog.HeaderEventType, Value: []byte(eventlog.TypeOf(ev))},
		kafka.Header{Key: eventlog.HeaderEventID, Value: []byte(ev.GetEventId())})
}

// ReadFrom calls fn for every event from offset from up to the end the
// topic has when called, in order, and returns the offset after the last
// one read.
func (b *BundleTopic) ReadFrom(ctx context.Context, from int64, fn func(ev *eventsv1.Event, offset int64)) (int64, error) {
	first, end, err := b.reader.bounds(ctx, 0)
	if err != nil {
		return from, err
	}
	from = max(from, first)
	if from >= end {
		return from, nil
	}
	if err := b.reader.ReadRange(ctx, 0, from, end, fn); err != nil {
		return from, err
	}
	return end, nil
}

// bounds returns the first and end offsets of a partition.
func (r *Reader) bounds(ctx context.Context, partition int) (first, end int64, err error) {
	resp, err := r.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		r.topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)},
	}})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", r.topic, partition, err)
	}
	for _, po := range resp.Topics[r.topic] {
		if po.Partition != partition {
			continue
		}
		if po.Error != nil {
			return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", r.topic, partition, po.Error)
		}
		return po.FirstOffset, po.LastOffset, nil
	}
	return 0, 0, fmt.Errorf("list offsets of %s/%d: no answer for the partition", r.topic, partition)
}

// ReadSince calls fn for every decodable event appended at or after since
// (by record timestamp) up to the end each partition has when called,
// partition by partition in offset order: the history a dry run replays.
func (r *Reader) ReadSince(ctx context.Context, since time.Time, fn func(ev *eventsv1.Event)) error {
	meta, err := r.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{r.topic}})
	if err != nil {
		return fmt.Errorf("read metadata of %s: %w", r.topic, err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return fmt.Errorf("read metadata of %s: topic not found", r.topic)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range meta.Topics[0].Partitions {
		req.Topics[r.topic] = append(req.Topics[r.topic], kafka.TimeOffsetOf(p.ID, since))
	}
	starts, err := r.client.ListOffsets(ctx, req)
	if err != nil {
		return fmt.Errorf("list offsets of %s since %s: %w", r.topic, since.Format(time.RFC3339), err)
	}
	for _, po := range starts.Topics[r.topic] {
		if po.Error != nil {
			return fmt.Errorf("list offsets of %s/%d: %w", r.topic, po.Partition, po.Error)
		}
		start := startOf(po)
		if start < 0 { // nothing at or after since
			continue
		}
		first, end, err := r.bounds(ctx, po.Partition)
		if err != nil {
			return err
		}
		from := max(first, start)
		if from >= end {
			continue
		}
		if err := r.ReadRange(ctx, po.Partition, from, end, func(ev *eventsv1.Event, _ int64) { fn(ev) }); err != nil {
			return err
		}
	}
	return nil
}

// startOf is the offset a time lookup answered: -1 when no record is that
// recent.
func startOf(po kafka.PartitionOffsets) int64 {
	for off := range po.Offsets {
		return off
	}
	return -1
}

// EnsureBundleTopic creates the policy-bundle topic when it is missing: one
// partition, records kept forever (the history of policy changes), the
// events topic's replication. It waits until the topic is served.
func EnsureBundleTopic(ctx context.Context, cfg eventlog.Config, topic string, logger *slog.Logger) error {
	client, closeIdle := cfg.Client(10 * time.Second)
	defer closeIdle()
	spec := kafka.TopicConfig{Topic: topic, NumPartitions: 1, ReplicationFactor: cfg.ReplicationFactor, ConfigEntries: []kafka.ConfigEntry{
		{ConfigName: "cleanup.policy", ConfigValue: "delete"},
		{ConfigName: "retention.ms", ConfigValue: "-1"},
		{ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(cfg.MinInsyncReplicas)},
	}}
	backoff := 100 * time.Millisecond
	for {
		err := ensureOnce(ctx, client, spec)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ensure topic %s: %w", topic, err)
		}
		logger.WarnContext(ctx, "policy-bundle topic not ready; retrying", "topic", topic, "error", err.Error(), "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure topic %s: %w", topic, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func ensureOnce(ctx context.Context, client *kafka.Client, spec kafka.TopicConfig) error {
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{spec.Topic}})
	if err != nil {
		return fmt.Errorf("read metadata: %w", err)
	}
	if len(meta.Topics) == 1 && meta.Topics[0].Error == nil && len(meta.Topics[0].Partitions) > 0 {
		for _, p := range meta.Topics[0].Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return fmt.Errorf("topic %s is not served yet", spec.Topic)
			}
		}
		return nil
	}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{spec}})
	if err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	if err := resp.Errors[spec.Topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic: %w", err)
	}
	return fmt.Errorf("topic %s created; waiting until it is served", spec.Topic)
}
