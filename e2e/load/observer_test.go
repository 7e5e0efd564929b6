package load

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// alertTrace is what the event log says about one alert.
type alertTrace struct {
	raised       time.Time // AlertRaised occurred_at
	routed       time.Time // AlertRouted occurred_at
	routedSeen   time.Time // when this observer read it
	stepDue      time.Time // routed + step 0 timeout
	firstSent    time.Time // NotificationSent step 0 repeat 0 occurred_at
	escalated    time.Time // AlertEscalated from step 0 occurred_at
	escalateSeen time.Time // when this observer read it
}

// observer follows the events topic from the start, one reader per
// partition (no consumer group), and keeps per-alert timestamps and counts
// per event type.
type observer struct {
	mu     sync.Mutex
	alerts map[string]*alertTrace
	types  map[string]int
}

func observe(ctx context.Context, b *testing.B, cfg eventlog.Config) *observer {
	b.Helper()
	o := &observer{alerts: map[string]*alertTrace{}, types: map[string]int{}}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	for p := range cfg.Partitions {
		wg.Go(func() { o.follow(ctx, b, cfg, p) })
	}
	return o
}

// follow reads one partition until ctx ends. A reader that fails (the
// shared broker restarted under us) is replaced at the next offset, so the
// observer never silently stops counting.
func (o *observer) follow(ctx context.Context, b *testing.B, cfg eventlog.Config, partition int) {
	next := kafka.FirstOffset
	logged := false
	for ctx.Err() == nil {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: cfg.Brokers, Topic: cfg.EventsTopic, Partition: partition,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 50 * time.Millisecond,
		})
		if err := r.SetOffset(next); err != nil {
			_ = r.Close()
			return
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, context.Canceled) && !logged {
					b.Logf("observer partition %d: %v (reconnecting)", partition, err)
					logged = true
				}
				break
			}
			next = m.Offset + 1
			var ev eventsv1.Event
			if err := proto.Unmarshal(m.Value, &ev); err != nil {
				continue
			}
			o.add(&ev, time.Now())
		}
		_ = r.Close()
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (o *observer) add(ev *eventsv1.Event, seen time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.types[eventlog.TypeOf(ev)]++
	a := o.alerts[ev.GetAlertId()]
	if a == nil {
		a = &alertTrace{}
		o.alerts[ev.GetAlertId()] = a
	}
	at := ev.GetOccurredAt().AsTime()
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised:
		if a.raised.IsZero() {
			a.raised = at
		}
	case *eventsv1.Event_AlertRouted:
		if a.routed.IsZero() {
			a.routed, a.routedSeen = at, seen
			if steps := p.AlertRouted.GetPolicy().GetSteps(); len(steps) > 0 {
				a.stepDue = at.Add(steps[0].GetTimeout().AsDuration())
			}
		}
	case *eventsv1.Event_NotificationSent:
		n := p.NotificationSent
		if n.GetStep() == 0 && n.GetRepeat() == 0 && a.firstSent.IsZero() {
			a.firstSent = at
		}
	case *eventsv1.Event_AlertEscalated:
		if p.AlertEscalated.GetFromStep() == 0 && a.escalated.IsZero() {
			a.escalated, a.escalateSeen = at, seen
		}
	}
}

// get returns a copy of the alert's trace.
func (o *observer) get(id string) (alertTrace, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	a, ok := o.alerts[id]
	if !ok {
		return alertTrace{}, false
	}
	return *a, true
}

// typeCounts returns the events seen so far by type.
func (o *observer) typeCounts() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.types))
	for k, v := range o.types {
		out[k] = v
	}
	return out
}
