package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/channel"
	"github.com/herald-health/herald/services/notification/internal/content"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// Producer names this service in event envelopes.
const Producer = "notification"

// Options configure the engine.
type Options struct {
	Store    Store
	Resolver Resolver
	Log      Appender
	Senders  map[eventsv1.Channel]channel.Sender
	Renderer *content.Renderer
	Backoff  domain.Backoff
	Limit    domain.RateLimit
	// DigestAfter is how long a person over the rate limit waits for the
	// digest that merges the messages held back (well under the shortest
	// step timeout of a non-CRITICAL policy).
	DigestAfter time.Duration
	// Lease is how long a claimed job stays hidden without renewal: the
	// engine renews the leases of the jobs it holds every Lease/3, so a
	// live worker is never overtaken however long it works, and the jobs
	// of a replica that died are claimed by another within Lease.
	Lease       time.Duration
	SendTimeout time.Duration
	// InDoubtResends caps how many times a message in doubt (its worker
	// died between the claim and the provider's answer) is sent again with
	// the same idempotency keys; after that it fails on its contact point
	// (NotificationFailed, "in doubt") and the person's next contact point
	// is tried. Zero: a message in doubt fails at once.
	InDoubtResends uint32
	// Tail, when set, makes every send decided on the alert as the log has
	// it: just before a message is claimed for sending, the projection is
	// read and the alert's events the consumer group has not committed past
	// are folded into it (the projection may be behind: a catch-up applies
	// AlertRouted, schedules step 0, and applies the AlertAcknowledged that
	// follows it in the log only after; a replica that died holds the
	// alert's partition until the group moves it). Nil: the projection as
	// it is (unit tests).
	Tail LogTail
	// FreshWait bounds how long a send decision retries reading the log
	// (default 15 s). When it passes (Kafka unreachable, or the group too
	// far behind to read the gap), the send is decided on the projection
	// as it is, with a warning: withholding a clinical message for an
	// outage of the log is the worse harm.
	FreshWait time.Duration
	// RebuildLease is how long the rebuild lock lasts without renewal
	// (default 6 s): a rebuilder renews it every third, so the lock of a
	// replica that died mid-rebuild ends within it.
	RebuildLease time.Duration
	Workers      int
	// ScheduleWorkers of the Workers are kept for scheduled jobs (retries,
	// rate-limited sends, fast-lane overflow, other replicas' jobs), so
	// that under sustained overload they never wait behind the fast lanes.
	// At most Workers-1; with one worker, that worker serves both.
	ScheduleWorkers int
	// MaxIdle bounds the poller's sleep when no job is due.
	MaxIdle    time.Duration
	AckBaseURL string
	// AckLinks signs acknowledge links; a link lives until the alert's
	// deadline, at least AckLinkMinTTL and at most AckLinkTTL from now
	// (LinkExpiry).
	AckLinks      *acklink.Signer
	AckLinkTTL    time.Duration
	AckLinkMinTTL time.Duration
	// References makes the alert references messages print
	// (platform/alertref; the same key as the acknowledgement service's).
	References alertref.Key
	Clock      clock.Clock
	Logger     *slog.Logger
	Telemetry  *telemetry.Telemetry
}

// localJob is a job leased to this replica at scheduling time, with the
// projection it was scheduled from.
type localJob struct {
	job   Job
	alert domain.Alert
}

// Engine applies events and works jobs.
type Engine struct {
	refs alertref.Key // the alert references people see
	o    Options
	wake chan struct{}
	// local and critical are the fast lanes: jobs leased to this replica
	// when they were scheduled. A free worker takes a critical one first.
	local    chan localJob
	critical chan localJob
	// sem holds a token per busy worker; fast holds one per worker busy
	// with a fast-lane job, and its capacity leaves ScheduleWorkers of
	// sem to the scheduled jobs.
	sem     chan struct{}
	fast    chan struct{}
	tracer  trace.Tracer
	outcome metric.Int64Counter
	latency metric.Float64Histogram
	window  metric.Float64Histogram

	leaseMu sync.Mutex
	held    map[Job]time.Time // jobs leased to this replica -> lease end

	mu      sync.Mutex
	history map[string][]time.Time // person id -> recent sends, for the rate limit
}

// NewEngine returns an engine.
func NewEngine(o Options) *Engine {
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = time.Second
	}
	if o.FreshWait <= 0 {
		o.FreshWait = 15 * time.Second
	}
	if o.RebuildLease <= 0 {
		o.RebuildLease = 6 * time.Second
	}
	if o.AckLinkTTL <= 0 {
		o.AckLinkTTL = 72 * time.Hour
	}
	if o.AckLinkMinTTL <= 0 || o.AckLinkMinTTL > o.AckLinkTTL {
		o.AckLinkMinTTL = min(time.Hour, o.AckLinkTTL)
	}
	o.ScheduleWorkers = min(max(o.ScheduleWorkers, 0), o.Workers-1)
	e := &Engine{o: o, wake: make(chan struct{}, 1), local: make(chan localJob, 256), critical: make(chan localJob, 256),
		sem: make(chan struct{}, o.Workers), fast: make(chan struct{}, o.Workers-o.ScheduleWorkers),
		tracer: o.Telemetry.Tracer(), history: map[string][]time.Time{}, held: map[Job]time.Time{}}
	e.refs = o.References
	m := o.Telemetry.Meter()
	e.outcome, _ = m.Int64Counter("herald.notification.outcomes", metric.WithDescription("notification attempts by channel, category and outcome"))
	e.latency, _ = m.Float64Histogram("herald.notification.send.duration", metric.WithUnit("s"), metric.WithDescription("provider call duration"))
	e.window, _ = m.Float64Histogram("herald.notification.decision.window", metric.WithUnit("s"),
		metric.WithDescription("from the instant the log's end was read for a send decision to the provider's acceptance: an acknowledgement appended within it does not stop the send"))
	return e
}

// relevant reports whether the service cares about an event type.
func relevant(ev *eventsv1.Event) bool {
	switch ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised, *eventsv1.Event_AlertAmended, *eventsv1.Event_AlertQuarantined,
		*eventsv1.Event_AlertRouted, *eventsv1.Event_AlertEscalated, *eventsv1.Event_AlertDeclined,
		*eventsv1.Event_AlertAcknowledged, *eventsv1.Event_AlertCancelled, *eventsv1.Event_AlertClosed,
		*eventsv1.Event_FailsafeQueued, *eventsv1.Event_SlaBreached:
		return true
	}
	return false
}

// Handle is the consumer handler: it folds the event into the projection
// and, atomically with it, schedules the step send the event asks for. A
// redelivered event changes nothing (the projection remembers applied ids,
// and a job scheduled twice is one job).
func (e *Engine) Handle(ctx context.Context, d eventlog.Delivery) error {
	ev := d.Event
	if !relevant(ev) || ev.GetAlertId() == "" {
		return nil
	}
	if created, err := e.create(ctx, d); created || err != nil {
		return err
	}
	a, projected, err := e.o.Store.ProjectedAlert(ctx, ev.GetAlertId())
	if err != nil {
		return unavailable(err)
	}
	if !projected {
		return fmt.Errorf("apply %s to alert %s: %w", d.Type, ev.GetAlertId(), ErrProjectionLost)
	}
	if slices.Contains(a.Applied, ev.GetEventId()) {
		return nil // already applied
	}
	next, send := domain.Apply(a, ev)
	var jobs []Job
	if send != nil {
		jobs = append(jobs, Job{Kind: JobStep, AlertID: next.ID, Round: send.Round, Step: send.Step, Repeat: send.Repeat, Failsafe: send.Failsafe, Critical: next.Critical(),
			Breach: send.Breach, Cause: ev.GetEventId(), Trace: traceparent(ctx, e.o.Telemetry)})
	}
	// Fast path: a job this replica can start at once is scheduled already
	// leased to it and handed to its dispatcher, saving a claim round trip.
	// If the replica dies, the lease ends and any replica claims the job.
	now := e.o.Clock.Now()
	due := now
	lane := e.local
	if next.Critical() {
		lane = e.critical
	}
	fast := len(jobs) > 0 && len(lane)+len(jobs) <= cap(lane)
	if fast {
		due = now.Add(e.o.Lease)
	}
	added, err := e.o.Store.SaveAlert(ctx, next, jobs, due)
	if err != nil {
		return unavailable(err)
	}
	if !fast {
		if len(jobs) > 0 {
			e.Wake()
		}
	} else {
		for i, j := range jobs {
			if !added[i] {
				continue // scheduled by an earlier delivery: that schedule stands
			}
			e.hold(j, due)
			select {
			case lane <- localJob{job: j, alert: next}:
			default: // the fast lane filled meanwhile: make it due for the poller
				e.release(j)
				if err := e.o.Store.Reschedule(ctx, j, now); err != nil {
					return unavailable(err)
				}
				e.Wake()
			}
		}
	}
	e.o.Logger.DebugContext(ctx, "event applied", slog.String("alert_id", next.ID), slog.String("event_id", ev.GetEventId()),
		slog.String("type", d.Type), slog.Int("jobs", len(jobs)))
	return nil
}

// create handles the first event of an alert in one round trip: it stores
// the event's fold as the alert's projection unless the store holds the
// alert already (a redelivery), which Handle then handles as any event.
// Only events that schedule nothing are handled so.
func (e *Engine) create(ctx context.Context, d eventlog.Delivery) (bool, error) {
	switch d.Event.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised, *eventsv1.Event_AlertQuarantined:
	default:
		return false, nil
	}
	a, send := domain.Apply(domain.Alert{}, d.Event)
	if send != nil {
		return false, nil
	}
	created, projected, err := e.o.Store.CreateAlert(ctx, a)
	if err != nil {
		return false, unavailable(err)
	}
	if !projected {
		return false, fmt.Errorf("apply %s to alert %s: %w", d.Type, a.ID, ErrProjectionLost)
	}
	if created {
		e.o.Logger.DebugContext(ctx, "event applied", slog.String("alert_id", a.ID), slog.String("event_id", d.Event.GetEventId()),
			slog.String("type", d.Type), slog.Int("jobs", 0))
	}
	return created, nil
}

// Wake makes the poller look for due jobs now.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run polls for due jobs and works them until ctx is done: it sleeps until
// the next job is due (bounded by MaxIdle, for jobs scheduled by other
// replicas) or until woken.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { e.renewLeases(ctx) })
	wg.Add(1)
	go func() {
		// The fast lanes: jobs leased to this replica when they were
		// scheduled. A job in hand waits for a worker outside the schedules'
		// share; when one is free, a critical job that arrived meanwhile
		// goes first.
		defer wg.Done()
		var next *localJob
		for {
			if next == nil {
				var lj localJob
				select {
				case <-ctx.Done():
					return
				case lj = <-e.critical:
				case lj = <-e.local:
				}
				next = &lj
			}
			select {
			case <-ctx.Done():
				return
			case e.fast <- struct{}{}:
			}
			select {
			case <-ctx.Done():
				return
			case e.sem <- struct{}{}:
			}
			lj := *next
			if lj.job.Critical {
				next = nil
			} else {
				select {
				case lj = <-e.critical: // next waits for the following worker
				default:
					next = nil
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-e.sem; <-e.fast }()
				e.work(ctx, lj.job, nil, &lj.alert)
			}()
		}
	}()
	for ctx.Err() == nil {
		free := cap(e.sem) - len(e.sem)
		if free == 0 {
			select {
			case <-ctx.Done():
			case <-e.wake:
			case <-e.o.Clock.After(10 * time.Millisecond):
			}
			continue
		}
		now := e.o.Clock.Now()
		jobs, err := e.o.Store.Claim(ctx, now, free, e.o.Lease)
		if err != nil {
			if ctx.Err() == nil {
				e.o.Logger.WarnContext(ctx, "claim notification jobs", slog.String("error", err.Error()))
			}
			e.sleep(ctx, time.Second)
			continue
		}
		for _, j := range jobs {
			e.hold(j, now.Add(e.o.Lease))
			e.sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-e.sem }()
				e.work(ctx, j, nil, nil)
			}()
		}
		if len(jobs) > 0 {
			continue
		}
		wait := e.o.MaxIdle
		if at, ok, err := e.o.Store.NextDue(ctx); err == nil && ok {
			if d := at.Sub(e.o.Clock.Now()); d < wait {
				wait = max(d, time.Millisecond)
			}
		}
		e.sleep(ctx, wait)
	}
	return nil
}

func (e *Engine) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-e.wake:
	case <-e.o.Clock.After(d):
	}
}

// work runs one job. points, when given, are contact points resolved just
// now for a recipient job (saves a second resolution).
func (e *Engine) work(ctx context.Context, j Job, points []domain.ContactPoint, alert *domain.Alert) {
	ctx = e.o.Telemetry.Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": j.Trace})
	ctx, span := e.tracer.Start(ctx, "notification.job", trace.WithAttributes(
		attribute.String("herald.alert_id", j.AlertID), attribute.Int("herald.step", int(j.Step)),
		attribute.Int("herald.repeat", int(j.Repeat)), attribute.Bool("herald.failsafe", j.Failsafe)))
	defer span.End()
	defer e.release(j)
	var err error
	switch j.Kind {
	case JobStep:
		err = e.workStep(ctx, j, alert)
	case JobRecipient:
		err = e.deliver(ctx, j, points, alert)
	case JobDigest:
		err = e.sendDigest(ctx, j)
	default:
		err = e.o.Store.Done(ctx, j)
	}
	switch {
	case err == nil || ctx.Err() != nil:
	case errors.Is(err, ErrProjectionLost):
		// The projection was lost (Redis wiped) and is not rebuilt yet: the
		// job waits for the rebuild, which schedules the alert's steps again
		// from the log. Not worth a warning each (the rebuild logs).
		e.o.Logger.DebugContext(ctx, "notification job waits for the projection's rebuild", slog.String("alert_id", j.AlertID),
			slog.Uint64("step", uint64(j.Step)))
	default:
		// The job stays leased and comes back when the lease ends.
		e.o.Logger.WarnContext(ctx, "notification job", slog.String("alert_id", j.AlertID),
			slog.Uint64("step", uint64(j.Step)), slog.String("error", err.Error()))
	}
}

// workStep resolves the step's targets and fans out recipient jobs. alert,
// when given, is the projection the job was scheduled from.
func (e *Engine) workStep(ctx context.Context, j Job, alert *domain.Alert) error {
	var a domain.Alert
	if alert != nil {
		a = *alert
	} else {
		var err error
		if a, err = e.projected(ctx, j.AlertID); err != nil {
			return err
		}
	}
	if reason := gate(a, j, ""); reason != domain.GateOK {
		if err := e.supersede(ctx, a, j, reason); err != nil {
			return err
		}
		return e.o.Store.Done(ctx, j)
	}
	step := stepOf(a, j)
	now := e.o.Clock.Now()
	if j.Failsafe && a.ReminderEvery > 0 {
		// The fail-safe queue reminds its officers on the policy's cadence
		// until the alert is closed: reminder n+1 is scheduled before
		// reminder n goes out (its gate ends the chain at the close). A
		// redelivered job schedules the same job again (one member).
		next := j
		next.Repeat, next.Cause, next.Trace = j.Repeat+1, eventlog.ID(j.AlertID, "failsafe-reminder", fmt.Sprint(j.Round), fmt.Sprint(j.Repeat+1)), ""
		if err := e.o.Store.Reschedule(ctx, next, now.Add(a.ReminderEvery)); err != nil {
			return err
		}
	}
	recips, err := e.o.Resolver.Resolve(ctx, a, step, now)
	if err != nil {
		// Try again shortly; the rules service may be restarting.
		if rerr := e.o.Store.Reschedule(ctx, j, now.Add(e.o.Backoff.Initial)); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	var jobs []Job
	var pts [][]domain.ContactPoint
	for _, r := range recips {
		rj := Job{Kind: JobRecipient, AlertID: j.AlertID, Round: j.Round, Step: j.Step, Repeat: j.Repeat, Failsafe: j.Failsafe, Critical: j.Critical,
			Breach: j.Breach, PersonID: r.PersonID, Role: r.Role, Tenant: r.Tenant, Cause: j.Cause, Trace: j.Trace}
		if !j.Failsafe && j.Breach == 0 && a.Gate(j.Round, j.Step, j.Repeat, false, r.PersonID) == domain.GateStopped {
			if err := e.supersede(ctx, a, rj, domain.GateStopped); err != nil {
				return err
			}
			continue
		}
		jobs = append(jobs, rj)
		pts = append(pts, r.Points)
	}
	if len(jobs) == 0 {
		// Nobody to contact: the step fails at once so escalation can move on.
		nid := NotificationID(j, eventsv1.Channel_CHANNEL_UNSPECIFIED)
		if j.Breach == 0 {
			nid = eventlog.ID(j.AlertID, fmt.Sprint(j.Step), fmt.Sprint(j.Repeat), "", "")
		}
		ev := e.envelope(a, j, eventlog.ID(nid, "failed", "0"))
		ev.Payload = &eventsv1.Event_NotificationFailed{NotificationFailed: &eventsv1.NotificationFailed{
			NotificationId: nid, Step: j.Step, Repeat: j.Repeat, Reason: "no recipient resolved",
			Permanent: true, RecipientExhausted: true, StepFailed: j.Breach == 0}}
		if err := e.o.Log.Append(ctx, ev); err != nil {
			return err
		}
		e.count(ctx, a, eventsv1.Channel_CHANNEL_UNSPECIFIED, "step_failed")
		return e.o.Store.Done(ctx, j)
	}
	if !j.Failsafe && step.AckMode == eventsv1.AckMode_ACK_MODE_ALL_MUST {
		// Before anyone is sent to, the log says who the step resolved to,
		// so the lifecycle waits for every one of them to acknowledge,
		// not only for those whose send happens to be recorded already.
		people := make([]string, len(jobs))
		for i, rj := range jobs {
			people[i] = rj.PersonID
		}
		ev := e.envelope(a, j, eventlog.ID(j.AlertID, "resolved", fmt.Sprint(j.Round), fmt.Sprint(j.Step), fmt.Sprint(j.Repeat)))
		ev.Payload = &eventsv1.Event_StepRecipientsResolved{StepRecipientsResolved: &eventsv1.StepRecipientsResolved{
			Step: j.Step, Repeat: j.Repeat, PersonIds: people}}
		if err := e.o.Log.Append(ctx, ev); err != nil {
			return err
		}
	}
	leased := now.Add(e.o.Lease)
	if err := e.o.Store.FanOut(ctx, j, jobs, leased); err != nil {
		return err
	}
	for _, rj := range jobs {
		e.hold(rj, leased)
	}
	var wg sync.WaitGroup
	for i, rj := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.work(ctx, rj, pts[i], &a)
		}()
	}
	wg.Wait()
	return nil
}

// deliver runs the pipeline for one recipient: gate, then for each contact
// point in plan order dedup, rate limit, send, retry or move on, record.
//
// alert, when given, is the projection the caller read just now.
func (e *Engine) deliver(ctx context.Context, j Job, points []domain.ContactPoint, alert *domain.Alert) error {
	// A first gate on the projection in hand, to drop at once what it
	// already stops; the send itself is decided on fresh state in attempt,
	// after the contact points are resolved (a slow or restarting rules
	// service must not stretch the time between decision and send).
	var a domain.Alert
	if alert != nil {
		a = *alert
	} else {
		var err error
		if a, err = e.projected(ctx, j.AlertID); err != nil {
			return err
		}
	}
	if reason := gate(a, j, j.PersonID); reason != domain.GateOK {
		if err := e.supersede(ctx, a, j, reason); err != nil {
			return err
		}
		return e.cancel(ctx, j, reason)
	}
	step := stepOf(a, j)
	if points == nil {
		recips, err := e.o.Resolver.Resolve(ctx, a, step, e.o.Clock.Now())
		if err != nil {
			if rerr := e.o.Store.Reschedule(ctx, j, e.o.Clock.Now().Add(e.o.Backoff.Initial)); rerr != nil {
				return errors.Join(err, rerr)
			}
			return err
		}
		for _, r := range recips {
			if r.PersonID == j.PersonID {
				points = r.Points
			}
		}
	}
	plan := domain.Plan(step.Channels, points)
	for i, cp := range plan {
		// resend is the ordinal of this send among the message's in-doubt
		// resends (0: an ordinary attempt).
		var resend uint32
		nid := NotificationID(j, cp.Channel)
		rec, err := e.o.Store.Record(ctx, j.AlertID, nid)
		if err != nil {
			return err
		}
		if rec.NotificationID == "" {
			now := e.o.Clock.Now()
			rec = Record{NotificationID: nid, Round: j.Round, AlertID: j.AlertID, Tenant: a.Tenant, Step: j.Step, Repeat: j.Repeat,
				Failsafe: j.Failsafe, Breach: j.Breach, PersonID: j.PersonID, Role: j.Role, RecipientTenant: j.Tenant, Channel: cp.Channel,
				CreatedAt: now, UpdatedAt: now}
		}
		decision := domain.Dedup(rec.Phase)
		if decision == domain.DecideInDoubt {
			// An attempt is in flight or was: its claim, or its
			// NotificationAttempted restored by a rebuild after Redis was
			// lost. Until a send begun then must have ended (the provider
			// call is bounded by SendTimeout, and its worker's lease by
			// Lease), its worker may still record the outcome: wait for it.
			// Deciding at once sent a second message when Redis was wiped
			// with the first on the wire (the rebuild forgot the claim).
			if until := rec.UpdatedAt.Add(e.o.SendTimeout + e.o.Lease); e.o.Clock.Now().Before(until) {
				e.o.Logger.DebugContext(ctx, "notification attempt in flight: waits for its outcome",
					slog.String("notification_id", nid), slog.String("alert_id", j.AlertID), slog.Time("until", until))
				return e.o.Store.Reschedule(ctx, j, until)
			}
			// No live worker recorded an outcome: the attempt never went
			// out, or its worker died mid-send (the provider may or may
			// not have the message). Send it again, with the same
			// idempotency keys (the notification id), up to the cap: a
			// possible duplicate, which a receiver honouring the keys
			// drops, over a possible silent loss.
			if !domain.ResendInDoubt(rec.InDoubt, e.o.InDoubtResends) {
				moved, err := e.inDoubtFailed(ctx, a, j, rec, cp, i == len(plan)-1)
				if err != nil || !moved {
					return err
				}
				continue
			}
			rec.InDoubt++
			resend = rec.InDoubt
			decision = domain.DecideSend
		}
		switch decision {
		case domain.DecideSkip:
			return e.o.Store.Done(ctx, j)
		case domain.DecideNextContact:
			continue
		case domain.DecideRecord:
			return e.recordSent(ctx, a, j, rec)
		}
		reserved, d := e.reserveSend(a.Category, j.PersonID)
		if j.Unlimited || j.Breach != 0 || resend > 0 {
			// An in-doubt resend is not held back: its first attempt
			// already passed the limit.
			d = 0
		}
		if d > 0 {
			// Over the person's limit: not held back silently, but merged
			// into one digest message to the person, soon.
			return e.deferToDigest(ctx, a, j, rec, cp)
		}
		// The job's lease is renewed while it is in hand (renewLeases), so
		// the sends of one job never outlast it.
		sent, err := e.attempt(ctx, a, j, rec, cp, i == len(plan)-1, reserved, resend)
		if err != nil || sent {
			return err
		}
		// Moved on: the next contact point is tried at once.
	}
	// Every contact point failed (or the person has none): exhausted.
	return e.exhaust(ctx, a, j, plan)
}

// inDoubtFailed ends a message whose in-doubt resends ran out: it fails on
// its contact point like any failed delivery (NotificationFailed, permanent,
// saying why), and moved=true sends the caller to the person's next contact
// point (after the last one, exhaust records the recipient's exhaustion and
// the step's failure, which escalates). Event id: deterministic per attempt.
func (e *Engine) inDoubtFailed(ctx context.Context, a domain.Alert, j Job, rec Record, cp domain.ContactPoint, last bool) (moved bool, err error) {
	reason := fmt.Sprintf("in doubt: the outcome of attempt %d is unknown (its worker stopped mid-send) and the message was already resent in doubt %d times; not sent again on this contact point",
		rec.Attempts, rec.InDoubt)
	rec.Phase, rec.LastError, rec.UpdatedAt = domain.PhaseFailed, reason, e.o.Clock.Now()
	e.o.Logger.WarnContext(ctx, "notification in doubt: resends ran out, failed on this contact point", slog.String("notification_id", rec.NotificationID),
		slog.String("alert_id", j.AlertID), slog.String("channel", cp.Channel.String()), slog.Uint64("in_doubt_resends", uint64(rec.InDoubt)))
	e.count(ctx, a, cp.Channel, "failed")
	if !last {
		ev := e.envelope(a, j, eventlog.ID(rec.NotificationID, "failed", "in-doubt", fmt.Sprint(rec.Attempts)))
		ev.Payload = &eventsv1.Event_NotificationFailed{NotificationFailed: &eventsv1.NotificationFailed{NotificationId: rec.NotificationID,
			Step: j.Step, Repeat: j.Repeat, Recipient: recipient(j), Channel: cp.Channel, Attempt: rec.Attempts, Reason: reason, Permanent: true}}
		if err := e.o.Log.Append(ctx, ev); err != nil {
			return false, err
		}
	}
	// After the last contact point, exhaust records the failure (with
	// recipient_exhausted and step_failed) from the record's reason.
	if err := e.o.Store.PutRecord(ctx, rec); err != nil {
		return false, err
	}
	return true, nil
}

// attempt sends on one contact point. It returns sent=true when the job is
// finished (sent, or a retry scheduled), false when the caller should move
// to the next contact point. reserved is the rate-limit slot reserveSend
// took for the send: it is given back unless the provider may have the
// message. resend is the ordinal of an in-doubt resend (0: an ordinary
// attempt); the NotificationAttempted says so.
func (e *Engine) attempt(ctx context.Context, a domain.Alert, j Job, rec Record, cp domain.ContactPoint, last bool, reserved time.Time, resend uint32) (bool, error) {
	mayHaveIt := false
	defer func() {
		if !mayHaveIt {
			e.releaseSend(j.PersonID, reserved)
		}
	}()
	sender, ok := e.o.Senders[cp.Channel]
	attempt := rec.Attempts + 1
	msg, err := e.message(a, j, rec.NotificationID, cp)
	if err != nil {
		return false, err
	}
	// The attempt goes on the log before it is decided and claimed: the
	// claim lives in Redis, and a rebuild after Redis is lost restores the
	// attempt from the log as in flight instead of sending the message
	// again while the provider may still answer this send. Before the
	// decision, not between it and the send, so that the append does not
	// widen the window in which an acknowledgement no longer stops the
	// message; an attempt the decision then stops is followed by its
	// NotificationSuperseded, which the rebuild reads as its end. (A worker
	// that dies between the append and the claim leaves an attempt that
	// only a rebuild reads, as in doubt.)
	//
	// A projection already lost (Redis wiped, not rebuilt) stops the job
	// here, before the append: the decision would fail on it anyway, and an
	// attempt left on the log with no outcome makes the rebuilt job wait
	// out the send it might have been.
	if _, err := e.projected(ctx, j.AlertID); err != nil {
		return false, err
	}
	attempted := e.envelope(a, j, eventlog.ID(rec.NotificationID, "attempt", fmt.Sprint(attempt)))
	attempted.Payload = &eventsv1.Event_NotificationAttempted{NotificationAttempted: &eventsv1.NotificationAttempted{
		NotificationId: rec.NotificationID, Step: j.Step, Repeat: j.Repeat, Recipient: recipient(j), Channel: cp.Channel, Attempt: attempt,
		InDoubtResend: resend}}
	if err := e.o.Log.Append(ctx, attempted); err != nil {
		return false, err
	}
	// The decision: on the alert as the log has it now (decisionState),
	// as late as it can be made, so that an acknowledgement already in the
	// log stops the message; only the claim below and the provider call
	// remain between it and the send (the decision window, measured).
	fresh, asOf, err := e.decisionState(ctx, j)
	if err != nil {
		return false, err
	}
	if reason := gate(fresh, j, j.PersonID); reason != domain.GateOK {
		if err := e.supersede(ctx, fresh, j, reason); err != nil {
			return false, err
		}
		return true, e.cancel(ctx, j, reason)
	}
	// Two jobs may race for the same message (e.g. two routings of one
	// alert in quick succession): only the one that claims the attempt sends;
	// the other's job comes back after its lease and finds the record.
	// The claim stores the "sending" marker with it.
	rec.Phase, rec.Attempts, rec.UpdatedAt, rec.Restored = domain.PhaseSending, attempt, e.o.Clock.Now(), false
	// The claim outlives the send however long the lease is.
	mine, err := e.o.Store.ClaimAttempt(ctx, rec, e.o.SendTimeout+e.o.Lease)
	if err != nil {
		return false, err
	}
	if !mine {
		return true, nil
	}
	if resend > 0 {
		e.o.Logger.WarnContext(ctx, "notification in doubt: sent again with the same idempotency key",
			slog.String("notification_id", rec.NotificationID), slog.String("alert_id", j.AlertID), slog.String("channel", cp.Channel.String()),
			slog.Uint64("attempt", uint64(attempt)), slog.Uint64("in_doubt_resend", uint64(resend)))
		e.count(ctx, a, cp.Channel, "resent_in_doubt")
	}
	var providerID string
	var sendErr error
	start := time.Now()
	if !ok {
		sendErr = channel.Permanent(fmt.Errorf("channel %s is not configured", cp.Channel))
	} else {
		sctx, cancel := context.WithTimeout(ctx, e.o.SendTimeout)
		providerID, sendErr = sender.Send(sctx, msg)
		cancel()
	}
	e.latency.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attribute.String("channel", cp.Channel.String())))
	if ctx.Err() != nil {
		// Shutting down mid-send: leave the "sending" marker; whoever claims
		// the job next treats it as in doubt and, once this send must have
		// ended, sends it again with the same idempotency keys (capped).
		mayHaveIt = true
		return true, ctx.Err()
	}
	now := e.o.Clock.Now()
	if sendErr == nil {
		mayHaveIt = true
		window := time.Since(asOf)
		e.window.Record(ctx, window.Seconds(), metric.WithAttributes(attribute.String("channel", cp.Channel.String())))
		e.o.Logger.DebugContext(ctx, "notification accepted", slog.String("notification_id", rec.NotificationID),
			slog.String("alert_id", j.AlertID), slog.String("channel", cp.Channel.String()), slog.Int64("decision_window_us", window.Microseconds()))
		rec.Phase, rec.ProviderID, rec.LastError, rec.UpdatedAt = domain.PhaseSent, providerID, "", now
		if err := e.o.Store.PutRecord(ctx, rec); err != nil {
			return true, err
		}
		return true, e.recordSent(ctx, a, j, rec)
	}
	permanent := channel.IsPermanent(sendErr)
	next := e.o.Backoff.AfterFailure(attempt, permanent, now)
	rec.LastError, rec.UpdatedAt = sendErr.Error(), now
	failed := &eventsv1.NotificationFailed{NotificationId: rec.NotificationID, Step: j.Step, Repeat: j.Repeat,
		Recipient: recipient(j), Channel: cp.Channel, Attempt: attempt, Reason: sendErr.Error(), Permanent: !next.Retry}
	if next.Retry {
		rec.Phase = domain.PhasePending
	} else {
		rec.Phase = domain.PhaseFailed
		if last {
			// Recorded by exhaust, with recipient_exhausted and step_failed.
			if err := e.o.Store.PutRecord(ctx, rec); err != nil {
				return true, err
			}
			e.count(ctx, a, cp.Channel, "failed")
			return false, nil
		}
	}
	ev := e.envelope(a, j, eventlog.ID(rec.NotificationID, "failed", fmt.Sprint(attempt)))
	ev.Payload = &eventsv1.Event_NotificationFailed{NotificationFailed: failed}
	if err := e.o.Log.Append(ctx, ev); err != nil {
		return true, err
	}
	if err := e.o.Store.PutRecord(ctx, rec); err != nil {
		return true, err
	}
	e.o.Logger.InfoContext(ctx, "notification attempt failed", slog.String("notification_id", rec.NotificationID),
		slog.String("alert_id", j.AlertID), slog.String("channel", cp.Channel.String()), slog.Uint64("attempt", uint64(attempt)),
		slog.Bool("retry", next.Retry), slog.String("error", sendErr.Error()))
	if next.Retry {
		e.count(ctx, a, cp.Channel, "retry")
		return true, e.o.Store.Reschedule(ctx, j, next.At)
	}
	e.count(ctx, a, cp.Channel, "failed")
	return false, nil
}

// exhaust records that no contact point of the person is left; the last
// NotificationFailed carries recipient_exhausted and, when every recipient
// of the step is exhausted, step_failed.
func (e *Engine) exhaust(ctx context.Context, a domain.Alert, j Job, plan []domain.ContactPoint) error {
	all, ex, err := e.o.Store.Exhaust(ctx, j)
	if err != nil {
		return err
	}
	var rec Record
	ch := eventsv1.Channel_CHANNEL_UNSPECIFIED
	nid := NotificationID(j, ch)
	if len(plan) > 0 {
		ch = plan[len(plan)-1].Channel
		nid = NotificationID(j, ch)
		if rec, err = e.o.Store.Record(ctx, j.AlertID, nid); err != nil {
			return err
		}
	}
	reason := rec.LastError
	if reason == "" {
		reason = "no usable contact point"
	}
	ev := e.envelope(a, j, eventlog.ID(nid, "exhausted"))
	ev.Payload = &eventsv1.Event_NotificationFailed{NotificationFailed: &eventsv1.NotificationFailed{
		NotificationId: nid, Step: j.Step, Repeat: j.Repeat, Recipient: recipient(j), Channel: ch, Attempt: rec.Attempts,
		Reason: reason, Permanent: true, RecipientExhausted: true, StepFailed: j.Breach == 0 && domain.StepOutcome(all, ex)}}
	if err := e.o.Log.Append(ctx, ev); err != nil {
		return err
	}
	e.o.Logger.InfoContext(ctx, "recipient exhausted", slog.String("alert_id", j.AlertID), slog.Uint64("step", uint64(j.Step)),
		slog.Bool("step_failed", domain.StepOutcome(all, ex)))
	return e.o.Store.Done(ctx, j)
}

// recordSent appends NotificationSent (deterministic id: a repeat is
// harmless) and marks the record.
func (e *Engine) recordSent(ctx context.Context, a domain.Alert, j Job, rec Record) error {
	ev := e.envelope(a, j, eventlog.ID(rec.NotificationID, "sent"))
	ev.Payload = &eventsv1.Event_NotificationSent{NotificationSent: &eventsv1.NotificationSent{
		NotificationId: rec.NotificationID, Step: j.Step, Repeat: j.Repeat, Recipient: recipient(j), Channel: rec.Channel,
		Attempt: rec.Attempts, ProviderMessageId: rec.ProviderID}}
	if j.Breach != 0 {
		// A breach notice is not a message of the step: it has its own fact.
		ev.Payload = &eventsv1.Event_BreachNoticeSent{BreachNoticeSent: &eventsv1.BreachNoticeSent{
			NotificationId: rec.NotificationID, Clock: j.Breach, Recipient: recipient(j), Channel: rec.Channel, ProviderMessageId: rec.ProviderID}}
	}
	if err := e.o.Log.Append(ctx, ev); err != nil {
		return err
	}
	rec.Phase, rec.UpdatedAt = domain.PhaseRecorded, e.o.Clock.Now()
	if err := e.o.Store.PutRecordDone(ctx, rec, j); err != nil {
		return err
	}
	e.count(ctx, a, rec.Channel, "sent")
	return nil
}

// cancel drops a job whose message may no longer go out and marks its
// pending records cancelled.
func (e *Engine) cancel(ctx context.Context, j Job, reason string) error {
	recs, err := e.o.Store.Records(ctx, j.AlertID)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Step == j.Step && r.Repeat == j.Repeat && r.PersonID == j.PersonID && r.Failsafe == j.Failsafe && r.Breach == j.Breach &&
			(r.Phase == domain.PhasePending || r.Phase == domain.PhaseDeferred || r.Phase == 0) {
			r.Phase, r.LastError, r.UpdatedAt = domain.PhaseCancelled, reason, e.o.Clock.Now()
			if err := e.o.Store.PutRecord(ctx, r); err != nil {
				return err
			}
		}
	}
	return e.o.Store.Done(ctx, j)
}

// message renders the message for a contact point.
func (e *Engine) message(a domain.Alert, j Job, nid string, cp domain.ContactPoint) (channel.Message, error) {
	link, err := e.ackLink(a, j, nid)
	if err != nil {
		return channel.Message{}, err
	}
	d := content.FromAlert(a, e.refs.Ref(a.ID), j.Step, j.Repeat, j.Failsafe, link)
	if j.Breach != 0 {
		d.Breach = ClockName(j.Breach)
	}
	m, err := e.o.Renderer.Render(cp.Channel, d)
	if err != nil {
		return channel.Message{}, fmt.Errorf("render notification %s: %w", nid, err)
	}
	return channel.Message{ID: nid, Channel: cp.Channel, Address: cp.Address, Subject: m.Subject, Body: m.Body, Data: d}, nil
}

func (e *Engine) ackLink(a domain.Alert, j Job, nid string) (string, error) {
	tok, err := e.o.AckLinks.Sign(acklink.Claims{
		TokenID: eventlog.ID(nid, "ack"), AlertID: a.ID, NotificationID: nid, PersonID: j.PersonID, Step: j.Step,
		ExpiresAt: LinkExpiry(e.o.Clock.Now(), a.Deadline, e.o.AckLinkMinTTL, e.o.AckLinkTTL)})
	if err != nil {
		return "", fmt.Errorf("sign acknowledge link of notification %s: %w", nid, err)
	}
	return e.o.AckBaseURL + "/ack/" + tok, nil
}

// LinkExpiry is when a link sent at now for an alert due by deadline (its
// category's acknowledge-by clock; zero when it has none) expires: at the
// deadline, so a link lives as long as the obligation it serves, but never
// sooner than minTTL from now (a reminder or escalation sent after the
// deadline must still work) and never later than maxTTL from now.
func LinkExpiry(now, deadline time.Time, minTTL, maxTTL time.Duration) time.Time {
	lo, hi := now.Add(minTTL), now.Add(maxTTL)
	switch {
	case deadline.IsZero() || deadline.After(hi):
		return hi
	case deadline.Before(lo):
		return lo
	}
	return deadline
}

func (e *Engine) envelope(a domain.Alert, j Job, id string) *eventsv1.Event {
	return &eventsv1.Event{EventId: id, AlertId: j.AlertID, Tenant: a.Tenant, OccurredAt: timestamppb.New(e.o.Clock.Now()),
		Producer: Producer, CausationId: j.Cause}
}

func recipient(j Job) *eventsv1.Recipient {
	return &eventsv1.Recipient{PersonId: j.PersonID, Role: j.Role, Tenant: j.Tenant}
}

// NotificationID is the deterministic id of the message of a recipient job
// on a channel: eventlog.ID(alert, step, repeat, person, channel) in the
// alert's first routing round, with the round added after a re-routing (an
// upgrade tells step 0 again). The fail-safe message's step is len(policy
// steps), so it never collides.
func NotificationID(j Job, ch eventsv1.Channel) string {
	if j.Breach != 0 {
		// The notice of a clock's breach: once per alert, round, clock,
		// person and channel (a clock is breached once per round).
		return eventlog.ID(j.AlertID, "breach", j.Breach.String(), fmt.Sprint(j.Round), j.PersonID, ch.String())
	}
	if j.Round > 1 {
		return eventlog.ID(j.AlertID, fmt.Sprint(j.Step), fmt.Sprint(j.Repeat), j.PersonID, ch.String(), "round", fmt.Sprint(j.Round))
	}
	return eventlog.ID(j.AlertID, fmt.Sprint(j.Step), fmt.Sprint(j.Repeat), j.PersonID, ch.String())
}

// reserveSend is the rate-limit stage for a message to person, decided and
// counted in one step: it returns how long to hold the message, or 0, and
// then the send is counted at once (at the returned instant), so that
// workers sending to the same person at the same time see each other's
// sends (deciding first and counting after the send let a burst through
// whole). A send that does not happen is given back with releaseSend.
func (e *Engine) reserveSend(cat eventsv1.Category, person string) (time.Time, time.Duration) {
	now := e.o.Clock.Now()
	if e.o.Limit.Max <= 0 {
		return now, 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if d := e.o.Limit.Delay(cat, e.history[person], now); d > 0 {
		return now, d
	}
	h := e.history[person]
	kept := h[:0]
	for _, t := range h {
		if now.Sub(t) < e.o.Limit.Window {
			kept = append(kept, t)
		}
	}
	e.history[person] = append(kept, now)
	return now, 0
}

// releaseSend gives back the send reserveSend counted at at.
func (e *Engine) releaseSend(person string, at time.Time) {
	if e.o.Limit.Max <= 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.history[person]
	if i := slices.IndexFunc(h, at.Equal); i >= 0 {
		e.history[person] = slices.Delete(h, i, i+1)
	}
}

func (e *Engine) count(ctx context.Context, a domain.Alert, ch eventsv1.Channel, outcome string) {
	if e.outcome == nil {
		return // an engine made without NewEngine (tests of one endpoint)
	}
	e.outcome.Add(ctx, 1, metric.WithAttributes(attribute.String("channel", ch.String()),
		attribute.String("category", a.Category.String()), attribute.String("outcome", outcome),
		attribute.String("tenant", a.Tenant)))
}

func traceparent(ctx context.Context, tel *telemetry.Telemetry) string {
	c := propagation.MapCarrier{}
	tel.Propagator.Inject(ctx, c)
	return c["traceparent"]
}

// projected reads the alert's projection; ErrProjectionLost when the store
// holds none (Redis wiped, not rebuilt yet): a job then waits for the
// rebuild, instead of reading an empty alert as one never routed and
// dropping its message.
func (e *Engine) projected(ctx context.Context, id string) (domain.Alert, error) {
	a, ok, err := e.o.Store.ProjectedAlert(ctx, id)
	if err == nil && !ok {
		err = fmt.Errorf("alert %s: %w", id, ErrProjectionLost)
	}
	return a, err
}

// decisionState returns the alert a send is decided on, as the log has it
// when the decision starts, and that instant. With a Tail it reads the
// projection and folds into it the alert's events the consumer group has
// not committed past (the same fold the consumer applies; events already
// applied are skipped by id): the projection may be behind the log (a
// catch-up, a rebalance, a replica that died holding the alert's
// partition), the log is not. The projection must be whole (an epoch):
// after a Redis wipe the job waits for the rebuild (ErrProjectionLost)
// rather than deciding on an empty alert. If the log cannot be read, it
// retries for FreshWait, then decides on the projection as it is, with a
// warning and a stale_decision count.
func (e *Engine) decisionState(ctx context.Context, j Job) (domain.Alert, time.Time, error) {
	var (
		a       domain.Alert
		projErr error
	)
	project := func(ctx context.Context) error {
		var projected bool
		a, projected, projErr = e.o.Store.ProjectedAlert(ctx, j.AlertID)
		if projErr == nil && !projected {
			projErr = fmt.Errorf("decide the send of alert %s: %w", j.AlertID, ErrProjectionLost)
		}
		return projErr
	}
	asOf := time.Now()
	if e.o.Tail == nil {
		return a, asOf, project(ctx)
	}
	giveUp := time.Now().Add(e.o.FreshWait)
	for {
		asOf = time.Now()
		evs, err := e.o.Tail.Unapplied(ctx, j.AlertID, project)
		if err == nil {
			for _, ev := range evs {
				if relevant(ev) {
					a, _ = domain.Apply(a, ev)
				}
			}
			return a, asOf, nil
		}
		if projErr != nil || ctx.Err() != nil {
			return a, asOf, err
		}
		if time.Now().After(giveUp) {
			if err := project(ctx); err != nil {
				return a, asOf, err
			}
			e.o.Logger.WarnContext(ctx, "send decided on a projection that may be behind the log", slog.String("alert_id", j.AlertID),
				slog.Uint64("step", uint64(j.Step)), slog.Duration("retried", e.o.FreshWait), slog.String("error", err.Error()))
			if e.outcome != nil {
				e.outcome.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "stale_decision")))
			}
			return a, asOf, nil
		}
		select {
		case <-ctx.Done():
			return a, asOf, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// supersede appends NotificationSuperseded: the message of job j (a whole
// step, or one recipient) will not be sent, for reason (a Gate reason). Its
// id is deterministic, so a job worked twice records it once.
func (e *Engine) supersede(ctx context.Context, a domain.Alert, j Job, reason string) error {
	code := eventsv1.SupersededReason_SUPERSEDED_REASON_NOT_IN_POLICY
	switch reason {
	case domain.GateClosed:
		code = eventsv1.SupersededReason_SUPERSEDED_REASON_ALERT_CLOSED
	case domain.GateSuperseded:
		code = eventsv1.SupersededReason_SUPERSEDED_REASON_OVERTAKEN
	case domain.GateStopped:
		code = eventsv1.SupersededReason_SUPERSEDED_REASON_RECIPIENT_STOPPED
	}
	parts := []string{j.AlertID, "superseded", fmt.Sprint(j.Round), fmt.Sprint(j.Step), fmt.Sprint(j.Repeat), fmt.Sprint(j.Failsafe), j.PersonID}
	if j.Breach != 0 {
		// A breach notice is its own message, apart from the step's.
		parts = append(parts, "breach", j.Breach.String())
	}
	ev := e.envelope(a, j, eventlog.ID(parts...))
	s := &eventsv1.NotificationSuperseded{Step: j.Step, Repeat: j.Repeat, Round: j.Round, Failsafe: j.Failsafe, Reason: reason, ReasonCode: code, Breach: j.Breach}
	if j.PersonID != "" {
		s.Recipient = recipient(j)
	}
	ev.Payload = &eventsv1.Event_NotificationSuperseded{NotificationSuperseded: s}
	if err := e.o.Log.Append(ctx, ev); err != nil {
		return err
	}
	e.o.Logger.InfoContext(ctx, "notification superseded", slog.String("alert_id", j.AlertID), slog.Uint64("step", uint64(j.Step)),
		slog.Uint64("repeat", uint64(j.Repeat)), slog.Bool("recipient", j.PersonID != ""), slog.String("reason", reason))
	e.count(ctx, a, eventsv1.Channel_CHANNEL_UNSPECIFIED, "superseded")
	return nil
}

// hold notes that j is leased to this replica until until, so that
// renewLeases keeps it leased while it waits in a fast lane or is worked.
func (e *Engine) hold(j Job, until time.Time) {
	e.leaseMu.Lock()
	defer e.leaseMu.Unlock()
	e.held[j] = time.UnixMilli(until.UnixMilli())
}

// release stops renewing j's lease (its work ended: the job is done,
// rescheduled, or left to come back when the lease ends).
func (e *Engine) release(j Job) {
	e.leaseMu.Lock()
	defer e.leaseMu.Unlock()
	delete(e.held, j)
}

// renewLeases extends, every Lease/3, the leases of the jobs this replica
// holds, until ctx is done. A lease is renewed only if the schedule still
// holds the end this replica gave it, so a job done or rescheduled
// meanwhile (a retry due in a second) is never pushed back. If this
// replica dies, its leases end within Lease and another replica claims the
// jobs: short leases, kept alive by a heartbeat, instead of one long lease
// that had to outlast the slowest send.
func (e *Engine) renewLeases(ctx context.Context) {
	every := max(e.o.Lease/3, 10*time.Millisecond)
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.o.Clock.After(every):
		}
		e.leaseMu.Lock()
		leases := make([]Lease, 0, len(e.held))
		for j, until := range e.held {
			leases = append(leases, Lease{Job: j, Until: until})
		}
		e.leaseMu.Unlock()
		if len(leases) == 0 {
			continue
		}
		until := time.UnixMilli(e.o.Clock.Now().Add(e.o.Lease).UnixMilli())
		renewed, err := e.o.Store.Renew(ctx, leases, until)
		if err != nil {
			if ctx.Err() == nil {
				e.o.Logger.WarnContext(ctx, "renew job leases", slog.Int("jobs", len(leases)), slog.String("error", err.Error()))
			}
			continue
		}
		e.leaseMu.Lock()
		for i, l := range leases {
			if cur, ok := e.held[l.Job]; ok && cur.Equal(l.Until) {
				if renewed[i] {
					e.held[l.Job] = until
				} else {
					delete(e.held, l.Job) // done, rescheduled or claimed elsewhere
				}
			}
		}
		e.leaseMu.Unlock()
	}
}

// gate says whether job j may still send to personID ("" for the step).
func gate(a domain.Alert, j Job, personID string) string {
	if j.Breach != 0 {
		return a.GateBreach(j.Round)
	}
	return a.Gate(j.Round, j.Step, j.Repeat, j.Failsafe, personID)
}

// stepOf is the step job j sends: a policy step, the fail-safe step, or
// the notice of a clock's breach.
func stepOf(a domain.Alert, j Job) domain.Step {
	if j.Breach != 0 {
		s, _ := a.BreachStep(j.Breach)
		return s
	}
	s, _ := a.StepAt(j.Step)
	return s
}

// ClockName names a clock for people: communicate, acknowledge, action.
func ClockName(c eventsv1.ClockKind) string {
	switch c {
	case eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE:
		return "communicate"
	case eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE:
		return "acknowledge"
	case eventsv1.ClockKind_CLOCK_KIND_ACTION:
		return "action"
	}
	return "deadline"
}
