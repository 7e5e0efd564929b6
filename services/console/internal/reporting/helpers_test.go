package reporting

import (
	"context"
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// t0 is the start of a Monday (UTC).
var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// spec is one alert the tests raise, with everything that happens to it.
type spec struct {
	tenant, id, accession, referrer, team string
	category                              eventsv1.Category
	raised                                time.Time
	target                                time.Duration // acknowledge-by = raised + target
	ack                                   time.Duration // 0: never acknowledged
	declines                              []eventsv1.DeclineReason
	breach                                []eventsv1.ClockKind
	failsafe, closed, cancelled           bool
	quarantined                           bool
	// amendReferrer/amendTeam, when set: an amendment after the first
	// notification moves the alert to this referrer and team.
	amendReferrer, amendTeam string
}

func (s spec) ackAt() time.Time { return s.raised.Add(s.ack) }
func (s spec) due() time.Time   { return s.raised.Add(s.target) }

func tsp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// events returns the alert's events in the order the services append them.
func (s spec) events() []*eventsv1.Event {
	var out []*eventsv1.Event
	n := 0
	add := func(at time.Time, p func(*eventsv1.Event)) {
		n++
		e := &eventsv1.Event{EventId: fmt.Sprintf("%s-e%d", s.id, n), AlertId: s.id, Tenant: s.tenant, OccurredAt: tsp(at), SchemaVersion: 1}
		p(e)
		out = append(out, e)
	}
	details := &eventsv1.AlertDetails{Accession: s.accession, Referrer: &eventsv1.Clinician{Id: s.referrer, Team: s.team},
		Patient: &eventsv1.Patient{NhsNumber: "9990000018", FamilyName: "NEVER-STORED"}, ReportText: "never stored"}
	if s.quarantined {
		add(s.raised, func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_AlertQuarantined{AlertQuarantined: &eventsv1.AlertQuarantined{Details: details}}
		})
		return out
	}
	add(s.raised, func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: details}}
	})
	policy := &eventsv1.PolicyRef{PolicyId: "pol-" + s.tenant, Version: "7"}
	add(s.raised.Add(time.Second), func(e *eventsv1.Event) {
		e.Policy = policy
		e.Payload = &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{Category: s.category,
			Clocks: &eventsv1.Clocks{StartedAt: tsp(s.raised), AcknowledgeBy: tsp(s.due())},
			Policy: &eventsv1.EscalationPolicy{Ref: policy}}}
	})
	add(s.raised.Add(2*time.Second), func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_NotificationSent{NotificationSent: &eventsv1.NotificationSent{NotificationId: s.id + "-n1",
			Recipient: &eventsv1.Recipient{PersonId: "p-" + s.referrer}, Channel: eventsv1.Channel_CHANNEL_EMAIL}}
	})
	if s.amendTeam != "" {
		amended := &eventsv1.AlertDetails{Accession: s.accession, Referrer: &eventsv1.Clinician{Id: s.amendReferrer, Team: s.amendTeam}}
		add(s.raised.Add(2*time.Second+500*time.Millisecond), func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_AlertAmended{AlertAmended: &eventsv1.AlertAmended{Details: amended}}
		})
	}
	for i, r := range s.declines {
		add(s.raised.Add(time.Duration(3+i)*time.Second), func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_AlertDeclined{AlertDeclined: &eventsv1.AlertDeclined{Reason: r, Note: "free text never stored",
				Actor: &eventsv1.Actor{PersonId: "p-decliner"}}}
		})
	}
	for _, k := range s.breach {
		add(s.due(), func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_SlaBreached{SlaBreached: &eventsv1.SLABreached{Clock: k, Deadline: tsp(s.due())}}
		})
	}
	if s.failsafe {
		add(s.due().Add(time.Minute), func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_FailsafeQueued{FailsafeQueued: &eventsv1.FailsafeQueued{Queue: "q"}}
		})
	}
	if s.ack > 0 {
		add(s.ackAt(), func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{
				Actor: &eventsv1.Actor{PersonId: "p-" + s.referrer, DisplayName: "Dr " + s.referrer, Role: "clinician", IdentityProvider: "cis2"}}}
		})
	}
	if s.closed {
		add(s.due().Add(time.Hour), func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_AlertClosed{AlertClosed: &eventsv1.AlertClosed{Reason: "free text", Actor: &eventsv1.Actor{PersonId: "p-officer"}}}
		})
	}
	if s.cancelled {
		add(s.raised.Add(10*time.Second), func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{}}
		})
	}
	// Occurrence order is log order here: sort by time, keeping ties stable.
	sort.SliceStable(out, func(i, j int) bool { return out[i].GetOccurredAt().AsTime().Before(out[j].GetOccurredAt().AsTime()) })
	return out
}

// openStore opens a store on a schema of its own with a clock at asOf.
func openStore(t testing.TB, asOf time.Time) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, testinfra.NewPostgres(t), clock.NewSimulated(asOf))
	if err != nil {
		t.Fatalf("open reporting store: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// logConfig is an event log on fresh topics of the test Kafka.
func logConfig(t testing.TB, partitions int) eventlog.Config {
	t.Helper()
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = testinfra.KafkaBrokers(t)
	cfg.EventsTopic = testinfra.NewTopic(t, "reporting-events", partitions)
	cfg.DLQTopic = testinfra.NewTopic(t, "reporting-dlq", 1)
	return cfg
}

// appendAll writes the events of specs to the log.
func appendAll(t testing.TB, cfg eventlog.Config, specs []spec) int {
	t.Helper()
	w := eventlog.NewWriter(cfg, "reporting-test", telemetry.Nop("reporting-test"))
	defer w.Close()
	n := 0
	var batch []*eventsv1.Event
	for _, s := range specs {
		batch = append(batch, s.events()...)
		if len(batch) >= 500 {
			n += len(batch)
			if err := w.Append(context.Background(), batch...); err != nil {
				t.Fatalf("append: %v", err)
			}
			batch = nil
		}
	}
	n += len(batch)
	if err := w.Append(context.Background(), batch...); err != nil {
		t.Fatalf("append: %v", err)
	}
	return n
}

// runProjector runs a projector until the test ends or stop is called.
func runProjector(t testing.TB, s *Store, cfg ProjectorConfig) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := NewProjector(s, cfg).Run(ctx); err != nil {
			t.Errorf("projector: %v", err)
		}
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// waitEvents waits until the store holds n events.
func waitEvents(t testing.TB, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var got int
		if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM alert_events`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got == n {
			return
		}
		if got > n {
			t.Fatalf("store holds %d events, want %d", got, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("store holds %d of %d events after 3 minutes", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// expected computes the figures of specs independently of the SQL: the
// definitions of Figures, in Go.
func expected(specs []spec, asOf time.Time, keep func(spec) bool) Figures {
	var f Figures
	var acks []float64
	for _, s := range specs {
		if !keep(s) {
			continue
		}
		f.Alerts++
		if s.cancelled {
			f.Cancelled++
		}
		if s.quarantined {
			f.Quarantined++
			continue
		}
		if s.failsafe {
			f.FailsafeQueued++
		}
		for _, k := range s.breach {
			switch k {
			case eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE:
				f.BreachesCommunicate++
			case eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE:
				f.BreachesAcknowledge++
			case eventsv1.ClockKind_CLOCK_KIND_ACTION:
				f.BreachesAction++
			}
		}
		for _, r := range s.declines {
			if f.Declines == nil {
				f.Declines = map[string]int{}
			}
			f.Declines[short(r.String(), "DECLINE_REASON_")]++
		}
		acked := s.ack > 0
		if acked {
			f.Acknowledged++
			acks = append(acks, s.ack.Seconds())
		}
		if s.cancelled {
			continue
		}
		switch {
		case acked && !s.ackAt().After(s.due()):
			f.Due++
			f.InTime++
		case acked:
			f.Due++
			f.Late++
		case !s.due().After(asOf):
			f.Due++
			f.Unacknowledged++
		default:
			f.Pending++
		}
	}
	f.PercentInTime = percent(f.InTime, f.Due)
	f.MedianAck, f.P90Ack = seconds(percentileCont(acks, 0.5)), seconds(percentileCont(acks, 0.9))
	return f
}

// percentileCont is the continuous percentile (linear interpolation between
// the closest ranks), as SQL's percentile_cont defines it.
func percentileCont(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	pos := p * float64(len(v)-1)
	lo := math.Floor(pos)
	hi := math.Ceil(pos)
	return v[int(lo)] + (pos-lo)*(v[int(hi)]-v[int(lo)])
}

// ackTolerance is how far a median or p90 from the rollups' histogram may
// be from the exact one: half a bucket, 0.5 s below 64 s and 1/128 of the
// value above (histogram.percentile), plus a nanosecond of rounding.
func ackTolerance(exact time.Duration) time.Duration {
	return time.Second/2 + exact/128 + time.Nanosecond
}

// sameFigures compares figures: counts exactly, the median and p90 within
// ackTolerance.
func sameFigures(t *testing.T, what string, got, want Figures) {
	t.Helper()
	for _, p := range [][2]*time.Duration{{&got.MedianAck, &want.MedianAck}, {&got.P90Ack, &want.P90Ack}} {
		if d := *p[0] - *p[1]; d.Abs() > ackTolerance(*p[1]) {
			t.Errorf("%s: time to acknowledge %v, want %v within %v", what, *p[0], *p[1], ackTolerance(*p[1]))
		}
		*p[0] = *p[1]
	}
	pctEqual := got.PercentInTime == want.PercentInTime || (math.IsNaN(got.PercentInTime) && math.IsNaN(want.PercentInTime)) ||
		math.Abs(got.PercentInTime-want.PercentInTime) < 1e-9
	gd, wd := got.Declines, want.Declines
	got.Declines, want.Declines = nil, nil
	got.PercentInTime, want.PercentInTime = 0, 0
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) || !pctEqual || fmt.Sprint(gd) != fmt.Sprint(wd) {
		t.Errorf("%s:\n got  %+v declines %v\n want %+v declines %v", what, got, gd, want, wd)
	}
}
