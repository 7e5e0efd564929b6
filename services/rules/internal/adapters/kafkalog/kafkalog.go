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
	// verifier skips forged records (nil: no key set configured);
	// verifierErr is why the configured one could not be loaded.
	verifier    *eventlog.Verifier
	verifierErr error
}

// New returns a reader of topic on cfg's brokers, with cfg's TLS and SASL
// (the service's own principal), and a function that closes its idle
// connections.
func New(cfg eventlog.Config, topic string) (*Reader, func()) {
	client, closeIdle := cfg.Client(30 * time.Second)
	r := &Reader{client: client, topic: topic}
	r.verifier, r.verifierErr = eventlog.NewVerifier(cfg)
	return r, closeIdle
}

// PathRange is the path (herald_events_refused_total) of ReadRange.
const PathRange = "rules_range"

// ReadRange calls fn for every decodable event at offsets [from, to) of the
// partition, in offset order. Records that do not decode, and records not
// signed by a service that may produce them (eventlog.Verifier: a forged
// approval on the policy-bundle topic puts no bundle in force), are
// skipped (the consumers dead-letter them); a refused one is logged and
// counted (eventlog.Verifier.Refused, path rules_range). An error means the range was
// not fully read; the caller retries.
func (r *Reader) ReadRange(ctx context.Context, partition int, from, to int64, fn func(ev *eventsv1.Event, offset int64)) error {
	if r.verifierErr != nil {
		return r.verifierErr
	}
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
			if proto.Unmarshal(value, &ev) != nil {
				continue
			}
			if r.verifier != nil {
				var key []byte
				if rec.Key != nil {
					key, err = io.ReadAll(rec.Key)
					_ = rec.Key.Close()
					if err != nil {
						return fmt.Errorf("read record of %s/%d: %w", r.topic, partition, err)
					}
				}
				if err := r.verifier.Check(r.topic, key, value, rec.Headers, &ev); err != nil {
					r.verifier.Refused(ctx, eventlog.Refusal{Path: PathRange, Topic: r.topic, Partition: partition, Offset: rec.Offset, Event: &ev}, err)
					continue
				}
			}
			fn(&ev, rec.Offset)
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
