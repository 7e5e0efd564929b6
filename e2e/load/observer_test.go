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
//
// A responsive observer fetches as soon as a record is there, which costs
// the broker and this process a fetch per record or two: at 1,000 alerts/s
// about a tenth of the machine the system under test is short of. In the
// throughput phase it reads lazily instead (fetches wait for 64 KiB or
// 250 ms), and its "when read" times are not reported.
type observer struct {
	mu     sync.Mutex
	alerts map[string]*alertTrace
	types  map[string]int
	// lazy is the read mode; switched is closed when it changes, so that
	// every reader reconnects in the new mode.
	lazy     bool
	switched chan struct{}
}

// setLazy switches the read mode of every partition's reader.
func (o *observer) setLazy(lazy bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lazy == lazy {
		return
	}
	o.lazy = lazy
	close(o.switched)
	o.switched = make(chan struct{})
}

func (o *observer) mode() (bool, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lazy, o.switched
}

func observe(ctx context.Context, b *testing.B, cfg eventlog.Config) *observer {
	b.Helper()
	o := &observer{alerts: map[string]*alertTrace{}, types: map[string]int{}, switched: make(chan struct{})}
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
		lazy, switched := o.mode()
		minBytes, maxWait := 1, 50*time.Millisecond
		if lazy {
			minBytes, maxWait = 64<<10, 250*time.Millisecond
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: cfg.Brokers, Topic: cfg.EventsTopic, Partition: partition,
			MinBytes: minBytes, MaxBytes: 10 << 20, MaxWait: maxWait,
		})
		if err := r.SetOffset(next); err != nil {
			_ = r.Close()
			return
		}
		rctx, stop := context.WithCancel(ctx)
		go func() {
			select {
			case <-switched:
			case <-rctx.Done():
			}
			stop()
		}()
		modeChanged := false
		for {
			m, err := r.ReadMessage(rctx)
			if err != nil {
				select {
				case <-switched:
					modeChanged = true
				default:
				}
				if ctx.Err() == nil && !modeChanged && !errors.Is(err, context.Canceled) && !logged {
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
		stop()
		_ = r.Close()
		if modeChanged {
			continue
		}
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
