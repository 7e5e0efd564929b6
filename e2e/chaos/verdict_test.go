//go:build chaos

package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// verdict is the invariants and figures of a run.
type verdict struct {
	alerts, accepted, refused int
	lost                      []string // accepted at intake, no AlertRaised on the log
	unrouted                  []string
	unresolved                []string // neither acknowledged nor fail-safe queued
	acknowledged, failsafe    int

	messages, unattributed int
	duplicates             int // messages delivered beyond the first per (alert, step, recipient)
	duplicatePairs         []string
	// redelivered are the resends in doubt the receivers dropped on their
	// idempotency key (not delivered to a person: not duplicates).
	redelivered int

	escalationsAfterAck int // appended after an acknowledgement in the log
	escalationsDecided  int // ... decided after it (occurred_at after its confirmation)
	escalationLag       []time.Duration
	breachesDecided     int // acknowledge/communicate breaches decided after it
	sendsAfterAck       int // messages begun after the acknowledgement was in the log
	sendLag             []time.Duration
	// Of every message of an acknowledged alert, by its NotificationAttempted's
	// offset against the acknowledgement's (one partition, so exact): decided
	// after the acknowledgement was in the log (the attempt is appended, then
	// the send decided on the log up to its end: a failure), or on the wire
	// when the acknowledgement arrived (appended after the attempt: the
	// window, measured from the acknowledgement to the message's start at the
	// sink and from the attempt to the acknowledgement).
	sendsDecidedAfter   int
	decidedAfterSamples []string
	sendsOnWire         int
	onWireLag           []time.Duration // the message began at the sink this long after the acknowledgement was in the log
	onWireLead          []time.Duration // the acknowledgement was appended this long after the attempt
	// Messages begun after the acknowledgement with no NotificationAttempted
	// (none expected: every send appends one): judged by the race window.
	sendsNoAttempt    int
	sendsBeyondWindow int
	lateSendSamples   []string
	queueAfterAck     int // messages (the queue's, or a step's) of alerts queued before their acknowledgement (owed, #18)
	acksUnconfirmed   int // acknowledgements in the log whose call did not return success

	deadlines, fired, cancelled int
	neverFired                  []string
	pending                     int // not yet due at the verdict
	cancelledLate               int
	cancelledLateMax            time.Duration
	escalationLate, breachLate  []time.Duration
	stepMessageDelay            []time.Duration

	skipped, skippedExplained int
	skippedUnacked            int // of the silent skips: the alert was never acknowledged
	skippedSamples            []string
	superseded, repaired      int
	supersededExists          bool
}

// judge folds every alert and checks the sinks' messages against it.
//
// "After an acknowledgement in the log" is judged against the moment the
// suite's acknowledgement call returned success (the acknowledgement was
// durable then); for an acknowledgement whose call did not succeed (a
// timeout, a conflict) against its record's timestamp, the producer's
// time just before the append.
func judge(alerts map[string][]record, byMsg map[string]string, load *loadStats, confirmed map[string]time.Time, msgs []message, window time.Duration, now time.Time) *verdict {
	v := &verdict{alerts: len(alerts), supersededExists: supersededField != nil}
	models := map[string]*alertModel{}
	byRef := map[string]string{}
	for id, recs := range alerts {
		models[id] = fold(id, recs)
		byRef[ref(id)] = id
	}
	load.mu.Lock()
	v.accepted, v.refused = len(load.accepted), len(load.refused)
	for msgID := range load.accepted {
		if _, ok := byMsg[msgID]; !ok {
			v.lost = append(v.lost, msgID)
		}
	}
	load.mu.Unlock()

	// Messages per (alert, slot), with when each began.
	got := map[string]map[slot][]time.Time{}
	keys := map[string]map[slot][]string{} // the idempotency keys, in the same order
	for _, m := range msgs {
		v.messages++
		if m.redelivered {
			v.redelivered++
			continue
		}
		id, ok := byRef[m.ref]
		if !ok || m.slot == slotUnknown {
			v.unattributed++
			continue
		}
		if got[id] == nil {
			got[id] = map[slot][]time.Time{}
			keys[id] = map[slot][]string{}
		}
		got[id][m.slot] = append(got[id][m.slot], m.began)
		keys[id][m.slot] = append(keys[id][m.slot], m.key)
	}

	for id, m := range models {
		if !m.raised {
			continue // e.g. a record of another alert's key
		}
		switch {
		case !m.routed:
			v.unrouted = append(v.unrouted, id)
		case m.ack != nil:
			v.acknowledged++
		case m.failsafe != nil:
			v.failsafe++
		default:
			v.unresolved = append(v.unresolved, id)
		}
		// Duplicates.
		for sl, times := range got[id] {
			if len(times) > 1 {
				v.duplicates += len(times) - 1
				// Named by alert id (to trace in the replicas' logs), with
				// each message's idempotency key (the notification id) and
				// when it began at the sink.
				var each []string
				for i, at := range times {
					each = append(each, fmt.Sprintf("%s@%s", keys[id][sl][i], at.UTC().Format("15:04:05.000")))
				}
				v.duplicatePairs = append(v.duplicatePairs, fmt.Sprintf("%s (alert %s) %s x%d [%s]", ref(id), id, sl, len(times), strings.Join(each, " ")))
			}
		}
		// After the acknowledgement.
		var inLog time.Time
		if m.ack != nil {
			inLog = m.ack.logTime
			if c, ok := confirmed[ref(id)]; ok {
				inLog = c
			} else {
				v.acksUnconfirmed++
			}
		}
		v.escalationsAfterAck += len(m.escalationsAfterAck)
		for _, a := range m.escalationsAfterAck {
			if a.at.After(inLog) {
				v.escalationsDecided++
				v.escalationLag = append(v.escalationLag, a.at.Sub(inLog))
			}
		}
		for _, a := range m.breachesAfterAck {
			if a.at.After(inLog) {
				v.breachesDecided++
			}
		}
		if m.ack != nil {
			for sl, times := range got[id] {
				if m.failsafe != nil {
					// Queued before it was acknowledged (the model keeps a
					// FailsafeQueued only while escalating): an acknowledgement
					// of a fail-safe-queued alert closes nothing (#18), so the
					// queue's message is owed until an officer closes the
					// alert, and so is a step's message not yet made when the
					// alert was queued (queueing takes the alert away from
					// nobody not yet told; docs/design.md). The late sends of two
					// of the four chaos runs before this was judged so were
					// these (step messages of alerts queued 0.3-2 s before
					// their acknowledgement).
					for _, b := range times {
						if b.After(inLog) {
							v.queueAfterAck++
						}
					}
					continue
				}
				for i, b := range times {
					lag := b.Sub(inLog)
					if lag > 0 {
						v.sendsAfterAck++
						v.sendLag = append(v.sendLag, lag)
					}
					at, ok := m.attemptOf(keys[id][sl][i], b)
					if ok && at.partition == m.ack.partition {
						if at.offset > m.ack.offset {
							v.sendsDecidedAfter++
							if len(v.decidedAfterSamples) < 10 {
								v.decidedAfterSamples = append(v.decidedAfterSamples, fmt.Sprintf("%s (alert %s) %s key %s: attempt at offset %d (%s), acknowledgement at offset %d (%s), began at the sink %s",
									ref(id), id, sl, keys[id][sl][i], at.offset, at.logTime.Format("15:04:05.000"), m.ack.offset, m.ack.logTime.Format("15:04:05.000"), b.Format("15:04:05.000")))
							}
						} else if lag > 0 {
							v.sendsOnWire++
							v.onWireLag = append(v.onWireLag, lag)
							v.onWireLead = append(v.onWireLead, m.ack.logTime.Sub(at.logTime))
						}
						continue
					}
					if lag <= 0 {
						continue
					}
					v.sendsNoAttempt++
					if lag > window {
						v.sendsBeyondWindow++
						if len(v.lateSendSamples) < 10 {
							judged := "the call's success"
							if _, ok := confirmed[ref(id)]; !ok {
								judged = "the record's time: the call did not succeed"
							}
							v.lateSendSamples = append(v.lateSendSamples, fmt.Sprintf("%s (alert %s) %s key %s +%v (ack at %s, judged by %s; record time %s)",
								ref(id), id, sl, keys[id][sl][i], lag.Round(time.Millisecond), inLog.Format("15:04:05.000"), judged, m.ack.logTime.Format("15:04:05.000")))
						}
					}
				}
			}
		}
		// Deadlines.
		for _, d := range m.deadlines {
			v.deadlines++
			switch {
			case d.fired:
				v.fired++
				if d.timeout {
					if d.kind == kindStep {
						v.escalationLate = append(v.escalationLate, d.at.Sub(d.due))
					} else {
						v.breachLate = append(v.breachLate, d.at.Sub(d.due))
					}
				}
			case d.cancelled:
				v.cancelled++
				if d.cancelledLate() {
					v.cancelledLate++
					v.cancelledLateMax = max(v.cancelledLateMax, d.at.Sub(d.due))
				}
			case d.due.Before(now):
				v.neverFired = append(v.neverFired, fmt.Sprintf("%s %s step %d due %s", ref(id), d.kind, d.step+1, d.due.Format("15:04:05.000")))
			default:
				v.pending++
			}
		}
		// Every step entered before the acknowledgement told its
		// recipients, or an event says why not.
		for step, entered := range m.entered {
			var firstMsg time.Time
			for _, sl := range slotsOf[step] {
				times := got[id][sl]
				if len(times) > 0 {
					if t := slices.MinFunc(times, func(a, b time.Time) int { return a.Compare(b) }); firstMsg.IsZero() || t.Before(firstMsg) {
						firstMsg = t
					}
					continue
				}
				v.skipped++
				if m.explained(step, personOf[sl]) {
					v.skippedExplained++
					continue
				}
				if m.ack == nil {
					v.skippedUnacked++
				}
				if len(v.skippedSamples) < 10 {
					state := "never acknowledged"
					if m.ack != nil {
						state = fmt.Sprintf("acknowledged %v after the step began", m.ack.ev.GetOccurredAt().AsTime().Sub(entered).Round(time.Millisecond))
					}
					v.skippedSamples = append(v.skippedSamples, fmt.Sprintf("%s (alert %s) %s (%s)", ref(id), id, sl, state))
				}
			}
			if !firstMsg.IsZero() {
				v.stepMessageDelay = append(v.stepMessageDelay, firstMsg.Sub(entered))
			}
		}
		if m.failsafe != nil && len(got[id][slotQueue]) == 0 {
			v.skipped++
			if m.explained(len(m.steps)-1, "chaos-fso") || m.explained(len(m.steps), "chaos-fso") {
				v.skippedExplained++
			} else {
				v.skippedUnacked++
				if len(v.skippedSamples) < 10 {
					v.skippedSamples = append(v.skippedSamples, fmt.Sprintf("%s (alert %s) %s (fail-safe queued)", ref(id), id, slotQueue))
				}
			}
		}
		v.superseded += m.supersededCount
		v.repaired += m.repaired
	}
	sort.Strings(v.neverFired)
	sort.Strings(v.duplicatePairs)
	return v
}

// converged reports whether the run has come to rest: every alert
// acknowledged or fail-safe queued and no deadline left pending past its
// due time.
func (v *verdict) converged() bool {
	return len(v.unrouted) == 0 && len(v.unresolved) == 0 && len(v.neverFired) == 0 && len(v.lost) == 0
}

// quantiles formats p50/p99/max of ds.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return fmt.Sprintf("n=%d p50 %s p99 %s max %s", len(s), r(q(0.50)), r(q(0.99)), r(s[len(s)-1]))
}

// report is the run's invariants and figures, one per line.
func (v *verdict) report(window time.Duration) string {
	var b strings.Builder
	line := func(ok bool, format string, args ...any) {
		mark := "ok  "
		if !ok {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s "+format+"\n", append([]any{mark}, args...)...)
	}
	info := func(format string, args ...any) { fmt.Fprintf(&b, "       "+format+"\n", args...) }
	fmt.Fprintf(&b, "chaos invariants (from the log and the sinks):\n")
	line(len(v.lost) == 0, "accepted at intake and on the log: %d accepted, %d lost, %d never accepted (AA) after a minute of retries", v.accepted, len(v.lost), v.refused)
	line(len(v.unrouted)+len(v.unresolved) == 0, "every alert ends acknowledged or fail-safe queued: %d alerts, %d acknowledged, %d fail-safe queued, %d unrouted, %d neither", v.alerts, v.acknowledged, v.failsafe, len(v.unrouted), len(v.unresolved))
	line(v.duplicates == 0, "no duplicate delivered to a person per (alert, step, recipient): %d duplicates over %d pairs (%d messages, %d unattributed)", v.duplicates, len(v.duplicatePairs), v.messages, v.unattributed)
	info("resent in doubt (deduplicated by the receiver on Message-ID / Idempotency-Key): %d", v.redelivered)
	line(v.escalationsDecided == 0, "no escalation decided after an acknowledgement in the log: %d decided after (by %s; %d appended after, %d of them decided before it: raced)", v.escalationsDecided, quantiles(v.escalationLag), v.escalationsAfterAck, v.escalationsAfterAck-v.escalationsDecided)
	line(v.sendsDecidedAfter == 0, "no send decided after an acknowledgement in the log (its NotificationAttempted after the acknowledgement's offset): %d", v.sendsDecidedAfter)
	line(v.sendsBeyondWindow == 0, "no message without a NotificationAttempted begun more than %v after an acknowledgement in the log: %d (of %d without one)", window, v.sendsBeyondWindow, v.sendsNoAttempt)
	line(len(v.neverFired) == 0, "every deadline fires: %d deadlines, %d fired, %d cancelled, %d never fired, %d not yet due", v.deadlines, v.fired, v.cancelled, len(v.neverFired), v.pending)
	if v.supersededExists {
		line(v.skipped == v.skippedExplained, "every skipped message has its event: %d skipped, %d with NotificationFailed/NotificationSuperseded, %d silent (%d of never-acknowledged alerts)", v.skipped, v.skippedExplained, v.skipped-v.skippedExplained, v.skippedUnacked)
	} else {
		info("skipped messages (not asserted: no NotificationSuperseded in proto yet): %d skipped, %d with NotificationFailed, %d silent (%d of never-acknowledged alerts)", v.skipped, v.skippedExplained, v.skipped-v.skippedExplained, v.skippedUnacked)
	}
	fmt.Fprintf(&b, "figures:\n")
	info("escalation lateness (step timer, occurred_at - due): %s", quantiles(v.escalationLate))
	info("clock breach lateness: %s", quantiles(v.breachLate))
	info("first message of a step after the step began: %s", quantiles(v.stepMessageDelay))
	info("messages begun after an acknowledgement in the log: %d (lag %s); on the wire when it arrived (decided before it): %d, began after it by %s, attempt appended before it by %s", v.sendsAfterAck, quantiles(v.sendLag), v.sendsOnWire, quantiles(v.onWireLag), quantiles(v.onWireLead))
	info("deadlines overtaken before they fired (cancelled after due): %d, max %v", v.cancelledLate, v.cancelledLateMax.Round(time.Millisecond))
	info("breaches decided after an acknowledgement in the log: %d; NotificationSuperseded events: %d; TimerRepaired events: %d", v.breachesDecided, v.superseded, v.repaired)
	info("acknowledgements judged by their record's time (the call did not return success): %d", v.acksUnconfirmed)
	info("messages begun after the acknowledgement of an alert fail-safe queued before it (the queue's, owed until an officer closes it, #18, and steps' not yet made when it was queued; not counted above): %d", v.queueAfterAck)
	if len(v.neverFired) > 0 {
		info("never fired (first 10): %v", v.neverFired[:min(10, len(v.neverFired))])
	}
	if len(v.duplicatePairs) > 0 {
		info("duplicates (first 10): %v", v.duplicatePairs[:min(10, len(v.duplicatePairs))])
	}
	if len(v.unresolved) > 0 {
		info("neither acknowledged nor fail-safe queued (first 10): %v", v.unresolved[:min(10, len(v.unresolved))])
	}
	if len(v.decidedAfterSamples) > 0 {
		info("sends decided after the acknowledgement was in the log (first 10): %v", v.decidedAfterSamples)
	}
	if len(v.lateSendSamples) > 0 {
		info("messages begun beyond the race window (first 10): %v", v.lateSendSamples)
	}
	if len(v.skippedSamples) > 0 {
		info("silently skipped (first 10): %v", v.skippedSamples)
	}
	return b.String()
}
