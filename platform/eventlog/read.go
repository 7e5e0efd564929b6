package eventlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
)

// ReadTopic reads every record of topic from the beginning up to the end it
// has when the call starts (the high watermark of each partition), calling
// fn in offset order per partition. It is for rebuilds: the state topic into
// a cache, or the event log into a projection. fn's error stops the read.
func ReadTopic(ctx context.Context, cfg Config, topic string, fn func(key, value []byte, partition int, offset int64) error) error {
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 30 * time.Second}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("read metadata of %s: %w", topic, err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return fmt.Errorf("read metadata of %s: topic not found", topic)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range meta.Topics[0].Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, req)
	if err != nil {
		return fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		if err := readPartition(ctx, client, topic, po.Partition, po.FirstOffset, po.LastOffset, fn); err != nil {
			return err
		}
	}
	return nil
}

func readPartition(ctx context.Context, client *kafka.Client, topic string, partition int, from, end int64, fn func(key, value []byte, partition int, offset int64) error) error {
	for offset := from; offset < end; {
		resp, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: offset, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
		if err != nil {
			return fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, offset, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, offset, resp.Error)
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
			if err := fn(key, value, partition, rec.Offset); err != nil {
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
	v, err := io.ReadAll(b)
	if err != nil {
		return nil, fmt.Errorf("read record bytes: %w", err)
	}
	return v, nil
}
