package testinfra

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// DeadLetters reads the dead-letter topic (partition 0 onwards, every
// partition) until it holds a record of every key in keys, and returns the
// reason header (named reasonHeader: eventlog.HeaderDLQReason) of each
// key's first record. It fails the test after within, naming the keys
// still missing.
func DeadLetters(t testing.TB, brokers []string, topic, reasonHeader string, within time.Duration, keys ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	got := map[string]string{}
	offsets := map[int]int64{}
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil {
			for _, p := range md.Topics[0].Partitions {
				resp, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p.ID, Offset: offsets[p.ID], MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond})
				if err != nil || resp.Error != nil {
					continue
				}
				for {
					rec, err := resp.Records.ReadRecord()
					if err != nil {
						break
					}
					offsets[p.ID] = rec.Offset + 1
					key := readAll(rec.Key)
					if _, seen := got[key]; seen || !want[key] {
						continue
					}
					for _, h := range rec.Headers {
						if h.Key == reasonHeader {
							got[key] = string(h.Value)
						}
					}
				}
			}
		}
		if len(got) == len(want) {
			return got
		}
		select {
		case <-ctx.Done():
			var missing []string
			for k := range want {
				if _, ok := got[k]; !ok {
					missing = append(missing, k)
				}
			}
			t.Fatalf("dead-letter topic %s: no record of %v within %v (found %v)", topic, missing, within, got)
		case <-time.After(100 * time.Millisecond):
		}
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
