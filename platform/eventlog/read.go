package eventlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// ReadTopic reads every record of topic from the beginning up to the end it
// has when the call starts (the high watermark of each partition), calling
// fn in offset order per partition. It is for rebuilds: the state topic into
// a cache, or the event log into a projection. fn's error stops the read.
//
// With cfg.VerifyKeysFile, a record of the events topic that is not signed
// by a service that may produce its type (Verifier.Check), or a record of
// another topic not signed by a key of the set, is skipped: never handed
// to fn, and logged and counted (Verifier.Refused, path "read_topic"). The
// consumer groups dead-letter such records; a rebuild does not apply them
// either.
func ReadTopic(ctx context.Context, cfg Config, topic string, fn func(key, value []byte, partition int, offset int64) error) error {
	return ReadTopicWith(ctx, cfg, topic, ReadOptions{Events: topic == cfg.EventsTopic}, fn)
}

// ReadOptions say how ReadTopicWith checks what it reads.
type ReadOptions struct {
	// Events: the topic holds events, each checked against the producers
	// table (eventsign.Producers).
	Events bool
	// Role: the topic holds records that are not events, written only by
	// the services of eventsign.TopicWriters[Role] (ignored with Events;
	// neither: any key of the set).
	Role string
	// Path names the reader in the log line and the counter of a refused
	// record (default PathReadTopic).
	Path string
	// Refused, when set, is told of each refused record too (a verifier
	// that reports forgeries as findings: heraldctl audit verify).
	Refused func(partition int, offset int64, value []byte, err error)
}

// ReadTopicWith is ReadTopic with the checks of opts.
func ReadTopicWith(ctx context.Context, cfg Config, topic string, opts ReadOptions, fn func(key, value []byte, partition int, offset int64) error) error {
	verifier, err := NewVerifier(cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	if opts.Path == "" {
		opts.Path = PathReadTopic
	}
	client, closeIdle := cfg.Client(30 * time.Second)
	defer closeIdle()
	var offs []kafka.PartitionOffsets
	err = retry(ctx, func() error {
		var err error
		offs, err = partitionOffsets(ctx, client, topic)
		return err
	})
	if err != nil {
		return err
	}
	for _, po := range offs {
		err := readPartition(ctx, client, topic, po.Partition, po.FirstOffset, po.LastOffset, func(key, value []byte, headers []kafka.Header, partition int, offset int64) error {
			if verifier != nil {
				if ev, err := verifier.checkAs(opts.Events, opts.Role, topic, key, value, headers); err != nil {
					verifier.Refused(ctx, Refusal{Path: opts.Path, Topic: topic, Partition: partition, Offset: offset, Event: ev}, err)
					if opts.Refused != nil {
						opts.Refused(partition, offset, value, err)
					}
					return nil
				}
			}
			return fn(key, value, partition, offset)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// checkAs checks a record read from a topic of events (events), of role,
// or of neither (any key of the set), returning the decoded event, if any,
// with the error.
func (v *Verifier) checkAs(events bool, role, topic string, key, value []byte, headers []kafka.Header) (*eventsv1.Event, error) {
	if events {
		ev := &eventsv1.Event{}
		if proto.Unmarshal(value, ev) != nil {
			ev = nil // not an event: the reader skips it as it always has
		}
		return ev, v.Check(topic, key, value, headers, ev)
	}
	if role != "" {
		return nil, v.CheckOn(role, topic, key, value, headers)
	}
	return nil, v.Check(topic, key, value, headers, nil)
}

// partitionOffsets returns the first and end offsets of every partition.
func partitionOffsets(ctx context.Context, client *kafka.Client, topic string) ([]kafka.PartitionOffsets, error) {
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("read metadata of %s: %w", topic, err)
	}
	if len(meta.Topics) != 1 {
		return nil, fmt.Errorf("read metadata of %s: topic not found", topic)
	}
	if err := meta.Topics[0].Error; err != nil {
		return nil, fmt.Errorf("read metadata of %s: %w", topic, err)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range meta.Topics[0].Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
	}
	return offs.Topics[topic], nil
}

// retry runs op until it succeeds, fails with an error a retry cannot fix,
// or about 20 s of retries have passed. Retriable: Kafka errors that say so
// (a partition without a leader yet, a topic still being created, a
// coordinator moving), which a just-created topic or a restarting broker
// gives for a moment.
func retry(ctx context.Context, op func() error) error {
	backoff := 50 * time.Millisecond
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := op()
		if err == nil || !retriable(err) || time.Now().After(deadline) {
			return err
		}
		if !sleep(ctx, backoff) {
			return err
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func retriable(err error) bool {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return kerr.Temporary() || kerr == kafka.UnknownTopicOrPartition || kerr == kafka.LeaderNotAvailable || kerr == kafka.NotLeaderForPartition
	}
	var nerr net.Error
	return errors.As(err, &nerr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

func readPartition(ctx context.Context, client *kafka.Client, topic string, partition int, from, end int64, fn func(key, value []byte, headers []kafka.Header, partition int, offset int64) error) error {
	for offset := from; offset < end; {
		var resp *kafka.FetchResponse
		err := retry(ctx, func() error {
			var err error
			resp, err = client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: offset, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
			if err == nil {
				err = resp.Error
			}
			if err != nil {
				return fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, offset, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		next := offset
		for {
			rec, err := resp.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read record of %s/%d: %w", topic, partition, err)
			}
			if rec.Offset >= end {
				break
			}
			if rec.Offset < offset {
				continue
			}
			key, err := readBytes(rec.Key)
			if err != nil {
				return err
			}
			value, err := readBytes(rec.Value)
			if err != nil {
				return err
			}
			if err := fn(key, value, rec.Headers, partition, rec.Offset); err != nil {
				return err
			}
			next = rec.Offset + 1
		}
		if next == offset {
			// Nothing readable at this offset yet (compacted gap or an empty
			// fetch); move past it only when the broker says the end is past it.
			if resp.HighWatermark <= offset {
				return nil
			}
			if resp.LogStartOffset > offset {
				next = resp.LogStartOffset
			} else {
				next = offset + 1
			}
		}
		offset = next
	}
	return nil
}

func readBytes(b kafka.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	v := make([]byte, b.Len())
	if _, err := io.ReadFull(b, v); err != nil {
		return nil, fmt.Errorf("read record bytes: %w", err)
	}
	return v, nil
}

// ErrNoRecord is ReadRecord's error when nothing is at the offset (removed
// by retention or compaction, or not written yet).
var ErrNoRecord = errors.New("no record at the offset")

// ReadRecord reads the one record of topic at partition and offset: a
// service that keeps where an event is (a timeline's position) reads it
// back when asked for it, instead of keeping its content.
func ReadRecord(ctx context.Context, cfg Config, topic string, partition int, offset int64) (key, value []byte, err error) {
	r := NewRecordReader(cfg)
	defer r.Close()
	return r.Read(ctx, topic, partition, offset)
}

// RecordReader reads single records by position over connections it keeps
// (ReadRecord for a service that reads many). Safe for concurrent use.
type RecordReader struct {
	client *kafka.Client
	close  func()
}

// NewRecordReader returns a reader of cfg's cluster. Close it when done.
func NewRecordReader(cfg Config) *RecordReader {
	client, closeIdle := cfg.Client(30 * time.Second)
	return &RecordReader{client: client, close: closeIdle}
}

// Close releases the reader's connections.
func (r *RecordReader) Close() { r.close() }

// Read reads the record of topic at partition and offset (ErrNoRecord when
// there is none). It does not check the record's signature: callers read
// back positions their own consumer recorded, after that consumer checked
// the record.
func (r *RecordReader) Read(ctx context.Context, topic string, partition int, offset int64) (key, value []byte, err error) {
	found := false
	err = readPartition(ctx, r.client, topic, partition, offset, offset+1, func(k, v []byte, _ []kafka.Header, _ int, at int64) error {
		if at == offset {
			key, value, found = k, v, true
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read %s/%d at %d: %w", topic, partition, offset, err)
	}
	if !found {
		return nil, nil, fmt.Errorf("read %s/%d at %d: %w", topic, partition, offset, ErrNoRecord)
	}
	return key, value, nil
}
