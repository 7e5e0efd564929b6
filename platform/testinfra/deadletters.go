package testinfra

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// DeadLetterReasons reads the dead-letter topic as it is now (every
// partition up to its end) and returns, by record key (the alert id), the
// reason header (named reasonHeader: eventlog.HeaderDLQReason) of each of
// its records, in offset order: one per consumer group that refused it.
// A topic that cannot be read yet gives an empty map.
func DeadLetterReasons(t testing.TB, brokers []string, topic, reasonHeader string) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	got := map[string][]string{}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return got
	}
	for _, p := range md.Topics[0].Partitions {
		for offset := int64(0); ; {
			resp, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p.ID, Offset: offset, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond})
			if err != nil || resp.Error != nil {
				break
			}
			for {
				rec, err := resp.Records.ReadRecord()
				if err != nil {
					break
				}
				offset = rec.Offset + 1
				key := readAll(rec.Key)
				for _, h := range rec.Headers {
					if h.Key == reasonHeader {
						got[key] = append(got[key], string(h.Value))
					}
				}
			}
			if offset >= resp.HighWatermark {
				break
			}
		}
	}
	return got
}

// DeadLetters waits until the dead-letter topic holds a record of every
// key in keys and returns, by key, its reasons joined by " | "
// (DeadLetterReasons). It fails the test after within, naming the keys
// still missing.
func DeadLetters(t testing.TB, brokers []string, topic, reasonHeader string, within time.Duration, keys ...string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		all := DeadLetterReasons(t, brokers, topic, reasonHeader)
		out := map[string]string{}
		var missing []string
		for _, k := range keys {
			if len(all[k]) == 0 {
				missing = append(missing, k)
			}
			out[k] = strings.Join(all[k], " | ")
		}
		if len(missing) == 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead-letter topic %s: no record of %v within %v", topic, missing, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readAll(b kafka.Bytes) string {
	if b == nil {
		return ""
	}
	defer b.Close()
	v := make([]byte, b.Len())
	_, _ = b.Read(v)
	return string(v)
}
