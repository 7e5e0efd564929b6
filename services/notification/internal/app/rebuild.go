package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// Rebuilder folds the event log into what the store holds: the alert
// projections and the notification records (from NotificationSent, Failed
// and Delivered), so that dedup survives the loss of Redis. It is pure: the
// caller feeds it events in log order and writes the result.
type Rebuilder struct {
	alerts map[string]domain.Alert
	// asked holds, per alert, the steps its current routing round asked
	// for, with the latest repeat of each.
	asked   map[string]asked
	records map[string]Record
	order   []string            // record ids, first-seen order
	byAlert map[string][]string // record ids per alert
	// skipped are the (round, step, repeat) of each alert a
	// NotificationSuperseded named.
	skipped map[string]map[[3]uint32]bool
	// breaches are the clocks breached per alert, with the round.
	breaches map[string][]breach
}

type breach struct {
	round uint32
	clock eventsv1.ClockKind
}

// asked is the steps one routing round asked for: step -> latest repeat.
type asked struct {
	round uint32
	steps map[uint32]uint32
}

// NewRebuilder returns an empty rebuilder.
func NewRebuilder() *Rebuilder {
	return &Rebuilder{alerts: map[string]domain.Alert{}, asked: map[string]asked{}, records: map[string]Record{}, byAlert: map[string][]string{}, skipped: map[string]map[[3]uint32]bool{}, breaches: map[string][]breach{}}
}

// Add folds one event.
func (r *Rebuilder) Add(ev *eventsv1.Event) {
	if ev.GetAlertId() == "" {
		return
	}
	if relevant(ev) {
		id := ev.GetAlertId()
		prev := r.alerts[id]
		var send *domain.Send
		r.alerts[id], send = domain.Apply(prev, ev)
		if b := ev.GetSlaBreached(); b != nil {
			r.breaches[id] = append(r.breaches[id], breach{round: prev.Round, clock: b.GetClock()})
		}
		if send != nil && !send.Failsafe && send.Breach == eventsv1.ClockKind_CLOCK_KIND_UNSPECIFIED {
			as := r.asked[id]
			if as.steps == nil || as.round != send.Round {
				as = asked{round: send.Round, steps: map[uint32]uint32{}}
			}
			as.steps[send.Step] = send.Repeat
			r.asked[id] = as
		}
		return
	}
	at := ev.GetOccurredAt().AsTime()
	rec := func(nid string, step, repeat uint32, who *eventsv1.Recipient, ch eventsv1.Channel) Record {
		x, ok := r.records[nid]
		if !ok {
			r.order = append(r.order, nid)
			r.byAlert[ev.GetAlertId()] = append(r.byAlert[ev.GetAlertId()], nid)
			x = Record{NotificationID: nid, AlertID: ev.GetAlertId(), Tenant: ev.GetTenant(), Step: step, Repeat: repeat,
				PersonID: who.GetPersonId(), Role: who.GetRole(), RecipientTenant: who.GetTenant(), Channel: ch, CreatedAt: at}
		}
		x.UpdatedAt = at
		return x
	}
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_NotificationSent:
		s := p.NotificationSent
		x := rec(s.GetNotificationId(), s.GetStep(), s.GetRepeat(), s.GetRecipient(), s.GetChannel())
		if x.Phase != domain.PhaseDelivered {
			x.Phase = domain.PhaseRecorded
		}
		x.Attempts, x.ProviderID, x.LastError = max(x.Attempts, s.GetAttempt()), s.GetProviderMessageId(), ""
		r.records[x.NotificationID] = x
	case *eventsv1.Event_NotificationAttempted:
		// A send about to begin: in flight until its NotificationSent or
		// NotificationFailed (of this attempt or a later one) follows. A
		// copy appended late by a worker that lost the claim to an attempt
		// already failed changes nothing.
		s := p.NotificationAttempted
		x := rec(s.GetNotificationId(), s.GetStep(), s.GetRepeat(), s.GetRecipient(), s.GetChannel())
		// The in-doubt resends made count towards their cap after the
		// rebuild too (a message whose sending kills its worker must not
		// loop because Redis was lost).
		if s.GetInDoubtResend() > x.InDoubt {
			x.InDoubt = s.GetInDoubtResend()
			r.records[x.NotificationID] = x
		}
		// A later attempt of a message in flight is its resend in doubt:
		// that one is in flight now.
		if (x.Phase == 0 || x.Phase == domain.PhasePending || x.Phase == domain.PhaseSending) && (s.GetAttempt() > x.Attempts || x.Phase == 0) {
			x.Phase, x.Attempts, x.Restored = domain.PhaseSending, max(x.Attempts, s.GetAttempt()), true
			r.records[x.NotificationID] = x
		}
	case *eventsv1.Event_NotificationSuperseded:
		// The decision stopped the message after its attempt was appended:
		// the attempt ended there (nothing was sent).
		s := p.NotificationSuperseded
		if r.skipped[ev.GetAlertId()] == nil {
			r.skipped[ev.GetAlertId()] = map[[3]uint32]bool{}
		}
		r.skipped[ev.GetAlertId()][[3]uint32{s.GetRound(), s.GetStep(), s.GetRepeat()}] = true
		for _, nid := range r.byAlert[ev.GetAlertId()] {
			x := r.records[nid]
			if x.Phase == domain.PhaseSending && x.Step == s.GetStep() && x.Repeat == s.GetRepeat() &&
				(s.GetRecipient().GetPersonId() == "" || s.GetRecipient().GetPersonId() == x.PersonID) {
				x.Phase, x.LastError, x.UpdatedAt = domain.PhaseCancelled, s.GetReason(), at
				r.records[nid] = x
			}
		}
	case *eventsv1.Event_NotificationFailed:
		f := p.NotificationFailed
		if f.GetRecipient().GetPersonId() == "" {
			return // a step that resolved to nobody: no record
		}
		x := rec(f.GetNotificationId(), f.GetStep(), f.GetRepeat(), f.GetRecipient(), f.GetChannel())
		if x.Phase == domain.PhaseRecorded || x.Phase == domain.PhaseDelivered {
			return
		}
		x.Phase = domain.PhasePending
		if f.GetPermanent() || f.GetRecipientExhausted() {
			x.Phase = domain.PhaseFailed
		}
		x.Attempts, x.LastError = max(x.Attempts, f.GetAttempt()), f.GetReason()
		r.records[x.NotificationID] = x
	case *eventsv1.Event_BreachNoticeSent:
		s := p.BreachNoticeSent
		x := rec(s.GetNotificationId(), 0, 0, s.GetRecipient(), s.GetChannel())
		x.Breach, x.Phase, x.ProviderID, x.Attempts = s.GetClock(), domain.PhaseRecorded, s.GetProviderMessageId(), max(x.Attempts, 1)
		r.records[x.NotificationID] = x
	case *eventsv1.Event_NotificationDelivered:
		if x, ok := r.records[p.NotificationDelivered.GetNotificationId()]; ok {
			x.Phase, x.UpdatedAt = domain.PhaseDelivered, at
			r.records[x.NotificationID] = x
		}
	}
}

// Records returns the rebuilt records, first seen first; a record whose
// step is the fail-safe step (len of the policy's steps) is marked so.
func (r *Rebuilder) Records() []Record {
	out := make([]Record, 0, len(r.order))
	for _, nid := range r.order {
		x := r.records[nid]
		if a, ok := r.alerts[x.AlertID]; ok && a.Routed && x.Breach == 0 && int(x.Step) == len(a.Steps) {
			x.Failsafe = true
		}
		out = append(out, x)
	}
	return out
}

// Alerts returns each rebuilt alert with the jobs that must run for it:
// every step its current routing round asked for (at the step's latest
// repeat) of an open alert, or the fail-safe message of a queued one.
// Dedup makes these jobs send only what the log does not show as sent.
// Not only the current step: an earlier step's job may have been held
// (leased to a replica that died, or waiting for a retry) when Redis was
// lost, and its recipients would otherwise never be contacted.
func (r *Rebuilder) Alerts() map[string][]Job {
	out := map[string][]Job{}
	for id, a := range r.alerts {
		var jobs []Job
		switch {
		case !a.Routed:
		case a.Status != domain.StatusOpen && a.Status != domain.StatusFailsafe:
			// Acknowledged, cancelled or closed: a step the round asked for
			// whose message is neither on the log (sent or failed) nor
			// superseded was in hand when Redis was lost (its job, and the
			// job's lease, went with Redis). Its job runs once more: the
			// gate stops it and says so (NotificationSuperseded), instead of
			// nothing on the timeline.
			if r.asked[id].round == a.Round {
				for _, st := range slices.Sorted(maps.Keys(r.asked[id].steps)) {
					rep := r.asked[id].steps[st]
					if !r.told(id, a.Round, st, rep) {
						jobs = append(jobs, Job{Kind: JobStep, AlertID: id, Round: a.Round, Step: st, Repeat: rep, Critical: a.Critical(), Cause: "rebuild"})
					}
				}
			}
		case a.Status == domain.StatusOpen || a.Status == domain.StatusFailsafe:
			steps := r.asked[id].steps
			if r.asked[id].round != a.Round {
				steps = nil
			}
			if _, ok := steps[a.Step]; !ok {
				steps = maps.Clone(steps)
				if steps == nil {
					steps = map[uint32]uint32{}
				}
				steps[a.Step] = a.Repeat
			}
			for _, s := range slices.Sorted(maps.Keys(steps)) {
				jobs = append(jobs, Job{Kind: JobStep, AlertID: id, Round: a.Round, Step: s, Repeat: steps[s], Critical: a.Critical(), Cause: "rebuild"})
			}
			if a.Status == domain.StatusFailsafe {
				jobs = append(jobs, Job{Kind: JobStep, AlertID: id, Round: a.Round, Step: uint32(len(a.Steps)), Failsafe: true, Critical: a.Critical(), Cause: "rebuild"})
			}
		}
		// The notices of the round's breaches: those already sent are
		// recorded and skipped; one not sent when Redis was lost goes now.
		for _, b := range r.breaches[id] {
			if _, ok := a.BreachStep(b.clock); ok && b.round == a.Round && a.GateBreach(b.round) == domain.GateOK {
				jobs = append(jobs, Job{Kind: JobStep, AlertID: id, Round: a.Round, Step: a.Step, Breach: b.clock, Critical: a.Critical(), Cause: "rebuild"})
			}
		}
		out[id] = jobs
	}
	return out
}

// told reports whether the log says what became of step (at repeat) of an
// alert's round: a message of it sent or failed, or a supersession. An
// attempt with no outcome (restored in flight) is not an outcome: its
// decision may have been cut short (Redis wiped between the attempt's
// append and the decision), and counted as told the step had no job and its
// skip no event (the likely cause of chaos run h17c-r2's 5 silent skips,
// steps acknowledged 1-2 s before the FLUSHALL; not traced, the run's topic
// was gone). Its step's job runs, and the gate records the skip.
func (r *Rebuilder) told(id string, round, step, repeat uint32) bool {
	if r.skipped[id][[3]uint32{round, step, repeat}] {
		return true
	}
	told := false
	for _, nid := range r.byAlert[id] {
		if x := r.records[nid]; x.Breach == 0 && x.Step == step && x.Repeat == repeat {
			if x.Phase == domain.PhaseSending && x.Restored {
				return false
			}
			told = true
		}
	}
	return told
}

// Alert returns a rebuilt alert.
func (r *Rebuilder) Alert(id string) domain.Alert { return r.alerts[id] }

// EnsureProjection rebuilds the store from the log when it has no epoch (a
// new or flushed Redis): read feeds every event of the log, in order per
// alert. Records are written before projections and jobs, so a job never
// runs without the dedup records of its alert. One replica rebuilds, under
// a lock it holds for RebuildLease and renews every third of it; the others
// wait for the epoch. A rebuilder that dies (SIGKILL mid-rebuild) leaves a
// lock that ends within RebuildLease, and the next replica to look (every
// replica looks every second, and before it applies an event) rebuilds:
// the lock once lasted 10 minutes, and a rebuilder killed holding it
// stopped every replica's sends for as long.
func (e *Engine) EnsureProjection(ctx context.Context, read func(ctx context.Context, fn func(*eventsv1.Event) error) error) error {
	token := rebuildToken()
	for {
		ok, err := e.o.Store.Epoch(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		locked, err := e.o.Store.LockRebuild(ctx, token, e.o.RebuildLease)
		if err != nil {
			return err
		}
		if locked {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	defer func() { _ = e.o.Store.UnlockRebuild(context.WithoutCancel(ctx), token) }()
	// Renew the lock while rebuilding; a rebuild that lost it stops (the
	// replica that took it over rebuilds).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(e.o.RebuildLease / 3):
			}
			ok, err := e.o.Store.RenewRebuild(ctx, token, e.o.RebuildLease)
			if err == nil && !ok {
				cancel(errors.New("the rebuild lock was lost (its lease ended)"))
				return
			}
		}
	}()
	defer func() { cancel(nil); <-renewed }()
	if err := e.rebuild(ctx, read); err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return fmt.Errorf("rebuild projection: %w", cause)
		}
		return err
	}
	return nil
}

// rebuildToken names one rebuild attempt in the lock.
func rebuildToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// rebuild folds the log and writes the result, then sets the epoch.
func (e *Engine) rebuild(ctx context.Context, read func(ctx context.Context, fn func(*eventsv1.Event) error) error) error {
	start := time.Now()
	rb := NewRebuilder()
	n := 0
	if err := read(ctx, func(ev *eventsv1.Event) error {
		n++
		rb.Add(ev)
		return nil
	}); err != nil {
		return fmt.Errorf("rebuild projection: %w", err)
	}
	// A record already there was written by a live worker since Redis was
	// lost, after this read of the log (e.g. a send it recorded meanwhile):
	// it stands. Written over, a send recorded as sent went back to an
	// attempt with no outcome, and its rebuilt job sent it again (chaos run
	// h17c-r2; TestARebuildDoesNotPutBackAnAttemptRecordedAsSentAfterItsRead).
	recs := rb.Records()
	for _, x := range recs {
		if err := e.o.Store.RestoreRecord(ctx, x); err != nil {
			return err
		}
	}
	alerts := rb.Alerts()
	now := e.o.Clock.Now()
	for id, jobs := range alerts {
		if _, err := e.o.Store.SaveAlert(ctx, rb.Alert(id), jobs, now); err != nil {
			return err
		}
	}
	if err := e.o.Store.SetEpoch(ctx); err != nil {
		return err
	}
	e.o.Logger.InfoContext(ctx, "notification projection rebuilt from the log", slog.Int("events", n),
		slog.Int("alerts", len(alerts)), slog.Int("notifications", len(recs)), slog.Duration("took", time.Since(start)))
	e.Wake()
	return nil
}
