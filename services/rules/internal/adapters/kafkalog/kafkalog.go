// Package kafkalog reads a range of one partition of the event log, so the
// router can observe the events another replica consumed while it owned the
// partition (after a consumer-group rebalance).
package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Reader reads ranges of a topic's partitions.
type Reader struct {
	client *kafka.Client
	topic  string
}

// New returns a reader of topic on cfg's brokers, with cfg's TLS and SASL
// (the service's own principal), and a function that closes its idle
// connections.
func New(cfg eventlog.Config, topic string) (*Reader, func()) {
	client, closeIdle := cfg.Client(30 * time.Second)
	return &Reader{client: client, topic: topic}, closeIdle
}

// ReadRange calls fn for every decodable event at offsets [from, to) of the
// partition, in offset order. Records that do not decode are skipped (the
// consumer dead-letters them). An error means the range was not fully read;
// the caller retries.
func (r *Reader) ReadRange(ctx context.Context, partition int, from, to int64, fn func(ev *eventsv1.Event, offset int64)) error {
	for offset := from; offset < to; {
		resp, err := r.client.Fetch(ctx, &kafka.FetchRequest{Topic: r.topic, Partition: partition, Offset: offset, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
		if err != nil {
			return fmt.Errorf("fetch %s/%d at %d: %w", r.topic, partition, offset, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("fetch %s/%d at %d: %w", r.topic, partition, offset, resp.Error)
		}
		next := offset
		for {
			rec, err := resp.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read record of %s/%d: %w", r.topic, partition, err)
			}
			if rec.Offset >= to {
				return nil
			}
			if rec.Offset < offset {
				continue
			}
			next = rec.Offset + 1
			if rec.Value == nil {
				continue
			}
			value, err := io.ReadAll(rec.Value)
			_ = rec.Value.Close()
			if err != nil {
				return fmt.Errorf("read record of %s/%d: %w", r.topic, partition, err)
			}
			var ev eventsv1.Event
			if proto.Unmarshal(value, &ev) == nil {
				fn(&ev, rec.Offset)
			}
		}
		if next == offset {
			if resp.HighWatermark <= offset {
				return nil // nothing more to read
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
