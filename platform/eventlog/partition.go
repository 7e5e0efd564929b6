package eventlog

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// PartitionReader reads ranges of one topic's partitions with a client it
// keeps: for a consumer that must see what has been appended to a
// partition since it last looked (the auditor reading its own chain back).
// It is safe for concurrent use.
type PartitionReader struct {
	client    *kafka.Client
	closeIdle func()
	topic     string
	cfg       Config
	// check, when set, is how Read checks each record (Verifying).
	check *ReadOptions
	v     *Verifier
}

// NewPartitionReader returns a reader of topic on cfg's brokers.
func NewPartitionReader(cfg Config, topic string) *PartitionReader {
	client, closeIdle := cfg.Client(30 * time.Second)
	return &PartitionReader{client: client, closeIdle: closeIdle, topic: topic, cfg: cfg}
}

// Verifying makes Read check each record against the configured key set as
// opts say (ReadTopicWith): a refused record is not handed to fn, and is
// logged and counted under opts.Path (default PathPartition). Without a
// key set it changes nothing. Call it before the first Read.
func (r *PartitionReader) Verifying(opts ReadOptions) error {
	v, err := NewVerifier(r.cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", r.topic, err)
	}
	if opts.Path == "" {
		opts.Path = PathPartition
	}
	r.v, r.check = v, &opts
	return nil
}

// Close releases the reader's connections.
func (r *PartitionReader) Close() { r.closeIdle() }

// Partitions returns how many partitions the topic has.
func (r *PartitionReader) Partitions(ctx context.Context) (int, error) {
	var n int
	err := retry(ctx, func() error {
		offs, err := partitionOffsets(ctx, r.client, r.topic)
		n = len(offs)
		return err
	})
	return n, err
}

// Bounds returns the partition's first offset and its end (the offset the
// next record will get).
func (r *PartitionReader) Bounds(ctx context.Context, partition int) (first, end int64, err error) {
	err = retry(ctx, func() error {
		res, err := r.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			r.topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)},
		}})
		if err != nil {
			return fmt.Errorf("list offsets of %s/%d: %w", r.topic, partition, err)
		}
		for _, po := range res.Topics[r.topic] {
			if po.Partition != partition {
				continue
			}
			if po.Error != nil {
				return fmt.Errorf("list offsets of %s/%d: %w", r.topic, partition, po.Error)
			}
			first, end = po.FirstOffset, po.LastOffset
			return nil
		}
		return fmt.Errorf("list offsets of %s/%d: partition not in the answer", r.topic, partition)
	})
	return first, end, err
}

// Read calls fn for each record of the partition from offset from (or the
// partition's first, if later) up to end, in offset order. fn's error stops
// the read. Signatures are checked only as Verifying says.
func (r *PartitionReader) Read(ctx context.Context, partition int, from, end int64, fn func(key, value []byte, partition int, offset int64) error) error {
	return readPartition(ctx, r.client, r.topic, partition, from, end, func(key, value []byte, headers []kafka.Header, partition int, offset int64) error {
		if r.v != nil {
			if ev, err := r.v.checkAs(r.check.Events, r.check.Role, r.topic, key, value, headers); err != nil {
				r.v.Refused(ctx, Refusal{Path: r.check.Path, Topic: r.topic, Partition: partition, Offset: offset, Event: ev}, err)
				if r.check.Refused != nil {
					r.check.Refused(partition, offset, value, err)
				}
				return nil
			}
		}
		return fn(key, value, partition, offset)
	})
}
