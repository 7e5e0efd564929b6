// Package domain holds the notification service's decisions as pure code:
// the narrow projection of an alert that the service needs (which alert and
// step are open, the policy snapshot's steps, the referrer), the gate that
// says whether a message may still go out, and the pipeline stages (dedup,
// rate limit, retry with bounded exponential backoff, outcome recording).
//
// It imports no gRPC, Kafka or Redis code; the app layer loads and stores
// the projection and performs the effects these functions decide.
package domain

import (
	"slices"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Status is where an alert stands as far as sending is concerned.
type Status int

// Statuses; zero is unspecified (an alert not seen yet).
const (
	StatusOpen Status = iota + 1
	StatusAcknowledged
	StatusCancelled
	StatusClosed
	StatusFailsafe
)

// maxApplied bounds how many applied event ids an alert remembers. Events of
// one alert arrive in order on one partition, so a redelivery is always of a
// recent event; the bound keeps the projection small.
const maxApplied = 128

// Target is an escalation target before resolution to people.
type Target struct {
	Kind   eventsv1.TargetKind `json:"kind"`
	Ref    string              `json:"ref,omitempty"`
	Tenant string              `json:"tenant,omitempty"`
}

// Step is one step of the policy snapshot carried by AlertRouted.
type Step struct {
	Index    uint32             `json:"index"`
	Targets  []Target           `json:"targets,omitempty"`
	Channels []eventsv1.Channel `json:"channels,omitempty"`
	Repeats  uint32             `json:"repeats,omitempty"`
	AckMode  eventsv1.AckMode   `json:"ack_mode,omitempty"`
}

// BreachNotice is who is told of a clock's breach, on which channels.
type BreachNotice struct {
	Clock    eventsv1.ClockKind `json:"clock"`
	Targets  []Target           `json:"targets,omitempty"`
	Channels []eventsv1.Channel `json:"channels,omitempty"`
}

// Referrer identifies the referring clinician, for REFERRER targets. It
// holds identifiers only (no display name).
type Referrer struct {
	ID     string `json:"id,omitempty"`
	System string `json:"system,omitempty"`
	Team   string `json:"team,omitempty"`
}

// Alert is the notification service's projection of one alert.
type Alert struct {
	ID            string            `json:"id"`
	Tenant        string            `json:"tenant,omitempty"`
	Category      eventsv1.Category `json:"category,omitempty"`
	LocalCategory string            `json:"local_category,omitempty"`
	// Deadline is the acknowledge-by clock, or communicate-by when the
	// category has no acknowledge clock.
	Deadline      time.Time `json:"deadline,omitzero"`
	Referrer      Referrer  `json:"referrer,omitzero"`
	Steps         []Step    `json:"steps,omitempty"`
	FailsafeQueue string    `json:"failsafe_queue,omitempty"`
	// Breach names who is told when each clock is breached (the policy's
	// breach notices); ReminderEvery is how often the fail-safe officers
	// are reminded of the alert while it is in the fail-safe queue.
	Breach        []BreachNotice `json:"breach,omitempty"`
	ReminderEvery time.Duration  `json:"reminder_every,omitempty"`
	// Quarantine says what was missing or wrong in a quarantined report, as
	// intake's problem codes (a fixed vocabulary, never the report's text);
	// empty for a complete report.
	Quarantine []eventsv1.ProblemCode `json:"quarantine,omitempty"`
	Routed     bool                   `json:"routed,omitempty"`
	// Round counts the routings applied: a re-routing (an upgrade or an
	// amendment) starts a new round at step 0, whose messages are new.
	Round  uint32 `json:"round,omitempty"`
	Status Status `json:"status,omitempty"`
	// Step and Repeat are the step being sent now.
	Step   uint32 `json:"step"`
	Repeat uint32 `json:"repeat"`
	// Stopped lists people who must get no further message for this alert:
	// they declined, or acknowledged under ALL_MUST.
	Stopped []string `json:"stopped,omitempty"`
	// Applied lists the most recent event ids applied, oldest first.
	Applied []string `json:"applied,omitempty"`
}

// Critical reports whether the alert is in the CRITICAL category (its
// messages go first when sending backs up).
func (a Alert) Critical() bool { return a.Category == eventsv1.Category_CATEGORY_CRITICAL }

// Send is an intent decided by Apply: send step Step, repeat Repeat of the
// alert. Failsafe marks the message to the trust's fail-safe team, sent when
// the policy is exhausted; its Step is len(Steps).
type Send struct {
	Round    uint32
	Step     uint32
	Repeat   uint32
	Failsafe bool
	// Breach, when set, is the notice of that clock's breach to the people
	// the policy names for it (Step is the alert's step at the breach).
	Breach eventsv1.ClockKind
}

// Apply folds one event into the projection and says what to send because
// of it. It is a pure function: the same events give the same projection.
// An event already applied (by event id) changes nothing and sends nothing;
// events the service does not care about are recorded as applied only.
func Apply(a Alert, ev *eventsv1.Event) (Alert, *Send) {
	if ev.GetEventId() != "" && slices.Contains(a.Applied, ev.GetEventId()) {
		return a, nil
	}
	a = a.clone()
	if a.ID == "" {
		a.ID = ev.GetAlertId()
	}
	if a.Tenant == "" {
		a.Tenant = ev.GetTenant()
	}
	if a.Status == 0 {
		a.Status = StatusOpen
	}
	if ev.GetEventId() != "" {
		a.Applied = append(a.Applied, ev.GetEventId())
		if len(a.Applied) > maxApplied {
			a.Applied = a.Applied[len(a.Applied)-maxApplied:]
		}
	}
	var send *Send
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised:
		a.reopen()
		a.setReferrer(p.AlertRaised.GetDetails().GetReferrer())
		a.Quarantine = nil // a complete report of the finding arrived
	case *eventsv1.Event_AlertAmended:
		a.setReferrer(p.AlertAmended.GetDetails().GetReferrer())
	case *eventsv1.Event_AlertQuarantined:
		a.reopen()
		a.setReferrer(p.AlertQuarantined.GetDetails().GetReferrer())
		var gaps []eventsv1.ProblemCode // a new slice: earlier states share the old one
		for _, pr := range p.AlertQuarantined.GetProblems() {
			if c := pr.GetCode(); !slices.Contains(gaps, c) {
				gaps = append(gaps, c)
			}
		}
		a.Quarantine = gaps
	case *eventsv1.Event_AlertRouted:
		send = a.route(p.AlertRouted)
	case *eventsv1.Event_AlertEscalated:
		if a.Status == StatusOpen {
			a.Step, a.Repeat = p.AlertEscalated.GetToStep(), p.AlertEscalated.GetRepeat()
			send = &Send{Round: a.Round, Step: a.Step, Repeat: a.Repeat}
		}
	case *eventsv1.Event_AlertDeclined:
		a.stop(p.AlertDeclined.GetActor().GetPersonId())
	case *eventsv1.Event_AlertAcknowledged:
		ack := p.AlertAcknowledged
		if a.ackMode(ack.GetStep()) == eventsv1.AckMode_ACK_MODE_ALL_MUST {
			a.stop(ack.GetActor().GetPersonId())
		} else if a.Status == StatusOpen {
			a.Status = StatusAcknowledged
		}
	case *eventsv1.Event_AlertCancelled:
		a.Status = StatusCancelled
	case *eventsv1.Event_AlertClosed:
		a.Status = StatusClosed
	case *eventsv1.Event_SlaBreached:
		clock := p.SlaBreached.GetClock()
		if _, ok := a.BreachStep(clock); ok && a.Status != StatusCancelled && a.Status != StatusClosed {
			send = &Send{Round: a.Round, Step: a.Step, Breach: clock}
		}
	case *eventsv1.Event_FailsafeQueued:
		if a.Status == StatusOpen {
			a.Status = StatusFailsafe
			if q := p.FailsafeQueued.GetQueue(); q != "" {
				a.FailsafeQueue = q
			}
			send = &Send{Round: a.Round, Step: uint32(len(a.Steps)), Failsafe: true}
		}
	}
	return a, send
}

// route applies AlertRouted. Every routing (the first, or a re-routing after
// an upgrade or an amendment) starts a new round at step 0: the people of
// step 0 hear of the change, because a round's notification ids are its own.
func (a *Alert) route(r *eventsv1.AlertRouted) *Send {
	a.Category = r.GetCategory()
	a.LocalCategory = r.GetLocalCategory()
	a.Deadline = deadline(r.GetClocks())
	a.Steps = a.Steps[:0]
	for _, s := range r.GetPolicy().GetSteps() {
		st := Step{Index: s.GetIndex(), Repeats: s.GetRepeats(), AckMode: s.GetAckMode(), Channels: slices.Clone(s.GetChannels())}
		for _, t := range s.GetTargets() {
			st.Targets = append(st.Targets, Target{Kind: t.GetKind(), Ref: t.GetRef(), Tenant: t.GetTenant()})
		}
		a.Steps = append(a.Steps, st)
	}
	a.FailsafeQueue = r.GetPolicy().GetFailsafeQueue()
	a.Breach = nil
	for _, n := range r.GetPolicy().GetBreachNotices() {
		bn := BreachNotice{Clock: n.GetClock(), Channels: slices.Clone(n.GetChannels())}
		for _, t := range n.GetTargets() {
			bn.Targets = append(bn.Targets, Target{Kind: t.GetKind(), Ref: t.GetRef(), Tenant: t.GetTenant()})
		}
		a.Breach = append(a.Breach, bn)
	}
	a.ReminderEvery = r.GetPolicy().GetFailsafeReminderEvery().AsDuration()
	a.Routed = true
	a.Round++
	if a.Status != StatusOpen {
		return nil
	}
	a.Step, a.Repeat = 0, 0
	return &Send{Round: a.Round, Step: 0, Repeat: 0}
}

func deadline(c *eventsv1.Clocks) time.Time {
	switch {
	case c.GetAcknowledgeBy() != nil:
		return c.GetAcknowledgeBy().AsTime()
	case c.GetCommunicateBy() != nil:
		return c.GetCommunicateBy().AsTime()
	case c.GetActionBy() != nil:
		return c.GetActionBy().AsTime()
	}
	return time.Time{}
}

// reopen makes a cancelled or closed alert open again: a new flagged
// report of its finding is a new obligation (the lifecycle re-opens it on
// the same event), and the routing that follows starts a new round at
// step 0. Nobody is stopped any more: the new report is news to everyone.
func (a *Alert) reopen() {
	if a.Status != StatusCancelled && a.Status != StatusClosed {
		return
	}
	a.Status = StatusOpen
	a.Stopped = nil
}

func (a *Alert) setReferrer(c *eventsv1.Clinician) {
	if c == nil || c.GetId() == "" {
		return
	}
	a.Referrer = Referrer{ID: c.GetId(), System: c.GetIdSystem(), Team: c.GetTeam()}
}

func (a *Alert) stop(personID string) {
	if personID != "" && !slices.Contains(a.Stopped, personID) {
		a.Stopped = append(a.Stopped, personID)
	}
}

func (a *Alert) ackMode(step uint32) eventsv1.AckMode {
	if int(step) < len(a.Steps) {
		return a.Steps[step].AckMode
	}
	return eventsv1.AckMode_ACK_MODE_ANY_ONE
}

func (a Alert) clone() Alert {
	a.Steps = slices.Clone(a.Steps)
	a.Stopped = slices.Clone(a.Stopped)
	a.Applied = slices.Clone(a.Applied)
	a.Quarantine = slices.Clone(a.Quarantine)
	a.Breach = slices.Clone(a.Breach)
	return a
}

// BreachStep is the step of the notice of clock's breach: the people the
// policy names for it, on its channels. ok is false when the policy names
// nobody for that clock.
func (a Alert) BreachStep(clock eventsv1.ClockKind) (Step, bool) {
	for _, n := range a.Breach {
		if n.Clock == clock && len(n.Targets) > 0 {
			return Step{Index: a.Step, Targets: n.Targets, Channels: n.Channels}, true
		}
	}
	return Step{}, false
}

// GateBreach says whether the notice of a clock's breach may still go out:
// unless the alert was cancelled or closed (an acknowledged alert's action
// clock can still be breached), and only in the round it was breached in.
func (a Alert) GateBreach(round uint32) string {
	switch {
	case !a.Routed:
		return GateNotRouted
	case round != a.Round:
		return GateSuperseded
	case a.Status == StatusCancelled || a.Status == StatusClosed:
		return GateClosed
	}
	return GateOK
}

// StepAt returns step i of the policy snapshot. For the fail-safe step
// (i == len(Steps)) it returns a step whose only target is the trust's
// fail-safe officer for the alert's fail-safe queue, on any channel.
func (a Alert) StepAt(i uint32) (Step, bool) {
	if int(i) < len(a.Steps) {
		return a.Steps[i], true
	}
	if int(i) == len(a.Steps) {
		return Step{Index: i, Targets: []Target{{Kind: eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER, Ref: a.FailsafeQueue, Tenant: a.Tenant}}}, true
	}
	return Step{}, false
}

// Gate reasons: why a message may not go out.
const (
	GateOK          = ""
	GateClosed      = "alert no longer open"
	GateSuperseded  = "step superseded"
	GateStopped     = "recipient declined or acknowledged"
	GateNotRouted   = "alert not routed"
	GateUnknownStep = "step not in policy"
)

// Gate says whether a message for (round, step, repeat) to personID may
// still go out: the alert must be open or in the fail-safe queue (only
// queued, for the fail-safe message) in that round, the step must not be
// overtaken by a newer repeat of itself, and the person must not have
// declined or acknowledged. It returns GateOK or the reason to cancel. An
// acknowledgement, cancellation, closure or re-routing applied before a
// retry therefore cancels the retry; an escalation does not cancel an
// earlier step's message, and a repeat replaces its step's earlier send.
func (a Alert) Gate(round, step, repeat uint32, failsafe bool, personID string) string {
	if !a.Routed {
		return GateNotRouted
	}
	if round != a.Round {
		return GateSuperseded
	}
	if failsafe {
		if a.Status != StatusFailsafe {
			return GateClosed
		}
		return GateOK
	}
	if a.Status != StatusOpen && a.Status != StatusFailsafe {
		return GateClosed
	}
	// In the fail-safe queue, a step's message not yet made still goes out:
	// queueing adds the fail-safe team, as an escalation adds people, and
	// takes the alert away from nobody not yet told (a step whose send was
	// held by a dead replica, or decided after the queueing was applied).
	if step > a.Step || (step == a.Step && repeat != a.Repeat) {
		// A newer send of the same step replaces this one (or the job is
		// ahead of the projection, which it never should be).
		return GateSuperseded
	}
	// An earlier step's message still goes out: escalation adds people, it
	// does not take the alert away from those not yet told (under load the
	// step timer can fire before the step's message was made).
	if int(step) >= len(a.Steps) {
		return GateUnknownStep
	}
	if personID != "" && slices.Contains(a.Stopped, personID) {
		return GateStopped
	}
	return GateOK
}
