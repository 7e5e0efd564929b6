//go:build chaos

package chaos

import (
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// The suite's own model of an alert's obligations, folded from the log
// alone (it does not import Herald's lifecycle package): the ladder's
// steps and their deadlines, the category's clocks, the first
// acknowledgement that took effect, and what came after it.

type deadlineKind string

const (
	kindStep        deadlineKind = "step"
	kindCommunicate deadlineKind = "communicate"
	kindAcknowledge deadlineKind = "acknowledge"
	kindAction      deadlineKind = "action"
)

// deadline is one deadline of an alert: a step's timeout or a clock.
type deadline struct {
	kind deadlineKind
	step int
	due  time.Time
	// fired: the escalation, fail-safe queueing or breach that took it, at
	// its occurred_at; cancelled: the event that made it moot (an
	// acknowledgement, a delivery), at its occurred_at.
	fired, cancelled bool
	at               time.Time
	timeout          bool // fired by its timer (not a decline or failure)
}

func (d *deadline) pending() bool { return !d.fired && !d.cancelled }

// cancelledLate reports a cancellation that came after the deadline had
// passed: the timer had not fired when it should have.
func (d *deadline) cancelledLate() bool { return d.cancelled && d.at.After(d.due) }

// afterAck is an escalation or breach appended after the acknowledgement
// that took effect, with when it was decided (its occurred_at).
type afterAck struct {
	rec record
	at  time.Time
}

// skipKey is a step recipient of an alert.
type skipKey struct {
	step   int
	person string
}

type alertModel struct {
	id     string
	raised bool
	routed bool
	rounds int

	steps     []time.Duration
	step      int
	stepStart time.Time
	state     string // "", "escalating", "acknowledged", "failsafe", "closed"
	ack       *record
	failsafe  *record
	// entered holds the steps entered while awaiting an acknowledgement,
	// with when.
	entered map[int]time.Time

	deadlines []*deadline
	current   *deadline // the pending step deadline
	clocks    map[deadlineKind]*deadline

	escalationsAfterAck []afterAck
	breachesAfterAck    []afterAck
	failed              map[skipKey]bool // a failure event that gives up on the recipient
	superseded          map[skipKey]bool
	supersededAny       map[int]bool // superseded events naming a step but no recipient
	supersededCount     int
	repaired            int
	// attempts holds each notification's NotificationAttempted records, in
	// log order: a send is decided after its attempt is appended, so an
	// acknowledgement at a lower offset than the attempt was in the log
	// when the send was decided.
	attempts map[string][]record
}

// personOf is the chaos bundle's person behind a message slot.
var personOf = map[slot]string{slotReferrer: "chaos-referrer", slotRegistrar: "chaos-registrar", slotWard: "chaos-ward-system", slotFSO: "chaos-fso", slotQueue: "chaos-fso"}

// supersededField is the payload field of NotificationSuperseded when the
// event exists in proto (nil until then): the suite's check of skipped
// messages is exact once it does.
var supersededField = eventsv1.File_herald_events_v1_events_proto.Messages().ByName("Event").Fields().ByName("notification_superseded")

// repairedField is the payload field of TimerRepaired (the overdue
// watchdog's event) when it exists in proto: counted as a figure.
var repairedField = eventsv1.File_herald_events_v1_events_proto.Messages().ByName("Event").Fields().ByName("timer_repaired")

func fold(id string, recs []record) *alertModel {
	m := &alertModel{id: id, entered: map[int]time.Time{}, clocks: map[deadlineKind]*deadline{},
		failed: map[skipKey]bool{}, superseded: map[skipKey]bool{}, supersededAny: map[int]bool{}, attempts: map[string][]record{}}
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.ev.GetEventId()] {
			continue // a record written twice
		}
		seen[r.ev.GetEventId()] = true
		m.apply(r)
	}
	return m
}

func (m *alertModel) awaiting() bool { return m.state == "escalating" || m.state == "failsafe" }

func (m *alertModel) addStepDeadline(at time.Time) {
	if m.step >= len(m.steps) {
		return
	}
	d := &deadline{kind: kindStep, step: m.step, due: at.Add(m.steps[m.step])}
	m.deadlines = append(m.deadlines, d)
	m.current = d
}

func (m *alertModel) resolve(d *deadline, fired bool, at time.Time) {
	if d == nil || !d.pending() {
		return
	}
	d.fired, d.cancelled, d.at = fired, !fired, at
}

func (m *alertModel) apply(r record) {
	ev := r.ev
	at := ev.GetOccurredAt().AsTime()
	acked := m.ack != nil
	after := func() afterAck { return afterAck{rec: r, at: at} }
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised:
		m.raised = true
	case *eventsv1.Event_AlertRouted:
		m.routed = true
		m.rounds++
		if m.state == "closed" {
			return
		}
		clocks := p.AlertRouted.GetClocks()
		m.setClock(kindCommunicate, clocks.GetCommunicateBy().AsTime(), clocks.GetCommunicateBy() != nil && !acked)
		m.setClock(kindAcknowledge, clocks.GetAcknowledgeBy().AsTime(), clocks.GetAcknowledgeBy() != nil && !acked)
		m.setClock(kindAction, clocks.GetActionBy().AsTime(), clocks.GetActionBy() != nil)
		if acked {
			return
		}
		m.steps = nil
		for _, s := range p.AlertRouted.GetPolicy().GetSteps() {
			m.steps = append(m.steps, s.GetTimeout().AsDuration())
		}
		m.resolve(m.current, false, at)
		m.state, m.step, m.stepStart = "escalating", 0, at
		m.entered = map[int]time.Time{0: at}
		m.addStepDeadline(at)
	case *eventsv1.Event_NotificationAttempted:
		nid := p.NotificationAttempted.GetNotificationId()
		m.attempts[nid] = append(m.attempts[nid], r)
	case *eventsv1.Event_NotificationFailed:
		n := p.NotificationFailed
		if n.GetPermanent() || n.GetRecipientExhausted() || n.GetStepFailed() {
			m.failed[skipKey{int(n.GetStep()), n.GetRecipient().GetPersonId()}] = true
		}
	case *eventsv1.Event_NotificationDelivered, *eventsv1.Event_AlertRead:
		if m.state != "closed" {
			m.resolve(m.clocks[kindCommunicate], false, at)
		}
	case *eventsv1.Event_AlertAcknowledged:
		if !m.awaiting() {
			return
		}
		m.state, m.ack = "acknowledged", &r
		m.resolve(m.current, false, at)
		m.resolve(m.clocks[kindCommunicate], false, at)
		m.resolve(m.clocks[kindAcknowledge], false, at)
	case *eventsv1.Event_AlertEscalated:
		x := p.AlertEscalated
		if acked {
			m.escalationsAfterAck = append(m.escalationsAfterAck, after())
		}
		if m.state != "escalating" || int(x.GetFromStep()) != m.step || int(x.GetToStep()) <= m.step || int(x.GetToStep()) >= len(m.steps) {
			return
		}
		if c := m.current; c != nil && c.pending() {
			m.resolve(c, true, at)
			c.timeout = x.GetReason() == eventsv1.EscalationReason_ESCALATION_REASON_TIMEOUT
		}
		m.step, m.stepStart = int(x.GetToStep()), at
		m.entered[m.step] = at
		m.addStepDeadline(at)
	case *eventsv1.Event_FailsafeQueued:
		if acked {
			m.escalationsAfterAck = append(m.escalationsAfterAck, after())
		}
		if m.state != "escalating" {
			return
		}
		if c := m.current; c != nil && c.pending() {
			m.resolve(c, true, at)
			c.timeout = c.step == len(m.steps)-1
		}
		m.state, m.failsafe = "failsafe", &r
	case *eventsv1.Event_SlaBreached:
		b := p.SlaBreached
		k := map[eventsv1.ClockKind]deadlineKind{eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE: kindCommunicate,
			eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE: kindAcknowledge, eventsv1.ClockKind_CLOCK_KIND_ACTION: kindAction}[b.GetClock()]
		if acked && k != kindAction {
			m.breachesAfterAck = append(m.breachesAfterAck, after())
		}
		if d := m.clocks[k]; d != nil && d.pending() && d.due.Equal(b.GetDeadline().AsTime()) {
			m.resolve(d, true, at)
			d.timeout = true
		}
	case *eventsv1.Event_AlertClosed, *eventsv1.Event_AlertCancelled:
		m.state = "closed"
		for _, d := range m.deadlines {
			m.resolve(d, false, at)
		}
	default:
		if repairedField != nil && ev.ProtoReflect().WhichOneof(repairedField.ContainingOneof()) == repairedField {
			m.repaired++
		}
		if supersededField != nil && ev.ProtoReflect().WhichOneof(supersededField.ContainingOneof()) == supersededField {
			m.supersededCount++
			msg := ev.ProtoReflect().Get(supersededField).Message()
			step := -1
			if f := msg.Descriptor().Fields().ByName("step"); f != nil {
				step = int(msg.Get(f).Uint())
			}
			person := ""
			if f := msg.Descriptor().Fields().ByName("recipient"); f != nil && f.Kind() == protoreflect.MessageKind {
				rm := msg.Get(f).Message()
				if pf := rm.Descriptor().Fields().ByName("person_id"); pf != nil {
					person = rm.Get(pf).String()
				}
			}
			if person == "" {
				m.supersededAny[step] = true
			} else {
				m.superseded[skipKey{step, person}] = true
			}
		}
	}
}

// setClock starts a clock's deadline (a re-route replaces a pending one).
func (m *alertModel) setClock(k deadlineKind, due time.Time, open bool) {
	if old := m.clocks[k]; old != nil {
		if old.pending() && old.due.Equal(due) {
			return
		}
		if old.pending() {
			old.cancelled, old.at = true, due
		}
	}
	if !open {
		return
	}
	d := &deadline{kind: k, step: -1, due: due}
	m.deadlines = append(m.deadlines, d)
	m.clocks[k] = d
}

// attemptOf returns the NotificationAttempted a message with idempotency
// key nid that began at the sink at began went out under: the last one
// appended before it began (the sink's clock and the broker's are the same
// machine's), else the first; ok is false when the log has none.
func (m *alertModel) attemptOf(nid string, began time.Time) (record, bool) {
	as := m.attempts[nid]
	if len(as) == 0 {
		return record{}, false
	}
	best := as[0]
	for _, a := range as[1:] {
		if !a.logTime.After(began) {
			best = a
		}
	}
	return best, true
}

// explained reports whether a missing message has an event saying why.
func (m *alertModel) explained(step int, person string) bool {
	k := skipKey{step, person}
	return m.failed[k] || m.superseded[k] || m.supersededAny[step]
}
