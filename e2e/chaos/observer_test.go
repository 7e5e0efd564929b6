//go:build chaos

package chaos

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// record is one event as the log holds it: where, and its timestamp (the
// producer's, taken just before the append).
type record struct {
	partition int
	offset    int64
	logTime   time.Time
	ev        *eventsv1.Event
}

// observer follows the events topic from its start, one reader per
// partition (no consumer group: it is not part of Herald), and keeps every
// alert's records in log order. AlertRaised details are dropped but for
// the source message id (the suite needs no patient data).
type observer struct {
	cfg eventlog.Config

	mu     sync.Mutex
	alerts map[string][]record
	byRef  map[string]string // opaque reference -> alert id
	byMsg  map[string]string // HL7 message id (MSH-10) -> alert id
	next   map[int]int64     // next offset per partition
	total  int
}

func observe(ctx context.Context, t testing.TB, cfg eventlog.Config) *observer {
	o := &observer{cfg: cfg, alerts: map[string][]record{}, byRef: map[string]string{}, byMsg: map[string]string{}, next: map[int]int64{}}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for p := range cfg.Partitions {
		wg.Go(func() { o.follow(ctx, t, p) })
	}
	return o
}

// follow reads one partition until ctx ends; a reader that fails (a
// broker killed under it) is replaced at the next offset.
func (o *observer) follow(ctx context.Context, t testing.TB, partition int) {
	next := kafka.FirstOffset
	for ctx.Err() == nil {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: o.cfg.Brokers, Topic: o.cfg.EventsTopic, Partition: partition,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond,
		})
		if err := r.SetOffset(next); err != nil {
			_ = r.Close()
			return
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
					t.Logf("observer partition %d: %v (reconnecting)", partition, err)
				}
				break
			}
			next = m.Offset + 1
			var ev eventsv1.Event
			if err := proto.Unmarshal(m.Value, &ev); err != nil {
				t.Errorf("partition %d offset %d: not an event: %v", partition, m.Offset, err)
				continue
			}
			o.add(record{partition: partition, offset: m.Offset, logTime: m.Time, ev: &ev})
		}
		_ = r.Close()
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (o *observer) add(r record) {
	if raised := r.ev.GetAlertRaised(); raised != nil {
		raised.Details = &eventsv1.AlertDetails{SourceMessageId: raised.GetDetails().GetSourceMessageId()}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	id := r.ev.GetAlertId()
	o.alerts[id] = append(o.alerts[id], r)
	o.next[r.partition] = r.offset + 1
	o.total++
	if raised := r.ev.GetAlertRaised(); raised != nil {
		o.byRef[ref(id)] = id
		o.byMsg[raised.GetDetails().GetSourceMessageId()] = id
	}
}

// alertOfRef returns the alert id of an opaque reference.
func (o *observer) alertOfRef(ref string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	id, ok := o.byRef[ref]
	return id, ok
}

// snapshot returns a copy of every alert's records and the message id
// index.
func (o *observer) snapshot() (map[string][]record, map[string]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	alerts := make(map[string][]record, len(o.alerts))
	for id, rs := range o.alerts {
		alerts[id] = append([]record(nil), rs...)
	}
	msgs := make(map[string]string, len(o.byMsg))
	for k, v := range o.byMsg {
		msgs[k] = v
	}
	return alerts, msgs
}

// caughtUp reports whether the observer has read every record on the log
// now.
func (o *observer) caughtUp(ctx context.Context) (bool, error) {
	client := &kafka.Client{Addr: kafka.TCP(o.cfg.Brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	var reqs []kafka.OffsetRequest
	for p := range o.cfg.Partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{o.cfg.EventsTopic: reqs}})
	if err != nil {
		return false, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, po := range ends.Topics[o.cfg.EventsTopic] {
		if po.Error != nil {
			return false, po.Error
		}
		if o.next[po.Partition] < po.LastOffset {
			return false, nil
		}
	}
	return true, nil
}

// refSecret is the reference key acknowledgement and notification share
// in the suite (platform/alertref).
var refSecret = strings.Repeat("chaos-reference-key-", 3)

var refKey = func() alertref.Key {
	k, err := alertref.New([]byte(refSecret))
	if err != nil {
		panic(err)
	}
	return k
}()

// ref is the reference people see for an alert (HRD-XXXX-XXXX-XXXX), as
// messages carry it.
func ref(alertID string) string { return refKey.Ref(alertID) }
