package domain

import (
	"slices"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Phase is where one notification (one notification id: alert, step,
// repeat, person, channel) stands. The app layer keeps it in a record that
// is written before and after each provider call; Dedup reads it.
type Phase int

// Phases. Zero means no record: nothing was attempted yet.
const (
	// PhasePending: an attempt failed retryably; a retry is scheduled and
	// nothing is in flight.
	PhasePending Phase = iota + 1
	// PhaseSending: the marker written just before the provider is called.
	// Found on recovery, it means the provider may or may not have the message.
	PhaseSending
	// PhaseSent: the provider accepted; NotificationSent is not yet appended.
	PhaseSent
	// PhaseRecorded: NotificationSent is in the log.
	PhaseRecorded
	// PhaseFailed: permanently failed on this contact point (or retries ran
	// out); NotificationFailed is in the log.
	PhaseFailed
	// PhaseDelivered: the provider reported delivery.
	PhaseDelivered
	// PhaseCancelled: the alert was acknowledged, cancelled, closed or
	// escalated before the message went out.
	PhaseCancelled
	// PhaseDeferred: the person's rate limit held the message back; it goes
	// out merged into the person's next digest (NotificationDeferred is in
	// the log), which records it sent.
	PhaseDeferred
)

// String names the phase as ListNotifications reports it.
func (p Phase) String() string {
	switch p {
	case PhasePending:
		return "pending"
	case PhaseSending:
		return "sending"
	case PhaseSent, PhaseRecorded:
		return "sent"
	case PhaseFailed:
		return "failed"
	case PhaseDelivered:
		return "delivered"
	case PhaseCancelled:
		return "cancelled"
	case PhaseDeferred:
		return "deferred"
	}
	return "unknown"
}

// Decision is what the dedup stage says to do with a notification.
type Decision int

// Decisions of Dedup.
const (
	// DecideSend: call the provider.
	DecideSend Decision = iota + 1
	// DecideInDoubt: a previous attempt crashed between the "sending" marker
	// and its outcome. The provider may or may not have the message. Once
	// that attempt must have ended, the message is sent again with the same
	// idempotency keys (ResendInDoubt): a possible duplicate, which a
	// receiver honouring the keys drops, is safer than a possible silent
	// loss (recording it as sent left people never told when the replica
	// died with the message still unsent).
	DecideInDoubt
	// DecideRecord: the provider accepted but NotificationSent was not
	// appended: append it (its event id is deterministic), do not send.
	DecideRecord
	// DecideSkip: done already (recorded, delivered or cancelled), or in
	// the person's digest (deferred).
	DecideSkip
	// DecideNextContact: this contact point failed permanently before: move
	// on to the person's next contact point.
	DecideNextContact
)

// Dedup is the first stage: from the record of a notification id it decides
// whether to send, record, skip or move on. It never decides to send twice
// what a provider may have accepted.
func Dedup(p Phase) Decision {
	switch p {
	case 0, PhasePending:
		return DecideSend
	case PhaseSending:
		return DecideInDoubt
	case PhaseSent:
		return DecideRecord
	case PhaseFailed:
		return DecideNextContact
	}
	return DecideSkip
}

// ResendInDoubt is the in-doubt policy: a message in doubt that was already
// resent in doubt resends times is sent again while resends < max; after
// that it fails on its contact point (a message whose sending kills its
// worker each time must not loop), and the caller moves on as for any
// failed delivery (next contact point, then the step's failure and the
// fail-safe path).
func ResendInDoubt(resends, max uint32) bool {
	return resends < max
}

// RateLimit bounds how many messages one person gets in a window. A zero
// Max disables it.
type RateLimit struct {
	Max    int
	Window time.Duration
}

// Delay is the rate-limit stage: how long to hold a message to a person who
// was sent messages at the instants in recent. CRITICAL alerts are never
// delayed.
func (l RateLimit) Delay(cat eventsv1.Category, recent []time.Time, now time.Time) time.Duration {
	if l.Max <= 0 || l.Window <= 0 || cat == eventsv1.Category_CATEGORY_CRITICAL {
		return 0
	}
	from := now.Add(-l.Window)
	var in []time.Time
	for _, t := range recent {
		if t.After(from) && !t.After(now) {
			in = append(in, t)
		}
	}
	if len(in) < l.Max {
		return 0
	}
	// Sliding window: the count drops below Max once the send at
	// len(in)-Max (in time order) leaves the window.
	slices.SortFunc(in, func(x, y time.Time) int { return x.Compare(y) })
	return in[len(in)-l.Max].Add(l.Window).Sub(now)
}

// Backoff is the retry policy for one contact point: MaxAttempts attempts in
// all, waiting Initial, 2*Initial, ... capped at Max between them.
type Backoff struct {
	Initial     time.Duration
	Max         time.Duration
	MaxAttempts uint32
}

// Delay is the wait after failed attempt number attempt (1-based).
func (b Backoff) Delay(attempt uint32) time.Duration {
	d := b.Initial
	for i := uint32(1); i < attempt; i++ {
		d *= 2
		if d >= b.Max || d <= 0 {
			return b.Max
		}
	}
	if d > b.Max {
		return b.Max
	}
	return d
}

// Next is what follows a failed attempt.
type Next struct {
	// Retry: try the same contact point again at At. Otherwise move on to
	// the next contact point.
	Retry bool
	At    time.Time
}

// AfterFailure is the retry stage: after failed attempt number attempt
// (1-based) on a contact point, retry a retryable error with bounded
// exponential backoff until MaxAttempts; a permanent error, or retries run
// out, moves on to the next contact point.
func (b Backoff) AfterFailure(attempt uint32, permanent bool, now time.Time) Next {
	if permanent || attempt >= b.MaxAttempts {
		return Next{}
	}
	return Next{Retry: true, At: now.Add(b.Delay(attempt))}
}

// ContactPoint is one way to reach a person. Its address is contact data:
// never logged.
type ContactPoint struct {
	Channel eventsv1.Channel `json:"channel"`
	Address string           `json:"-"`
}

// Plan orders a person's contact points for a step: the step's channels in
// the step's order (all channels in the person's order when the step names
// none), at most one contact point per channel (the person's first), since
// the notification id is per channel. Contact points without an address or
// channel are dropped.
func Plan(stepChannels []eventsv1.Channel, points []ContactPoint) []ContactPoint {
	first := map[eventsv1.Channel]ContactPoint{}
	var order []eventsv1.Channel
	for _, p := range points {
		if p.Address == "" || p.Channel == eventsv1.Channel_CHANNEL_UNSPECIFIED {
			continue
		}
		if _, ok := first[p.Channel]; !ok {
			first[p.Channel] = p
			order = append(order, p.Channel)
		}
	}
	if len(stepChannels) > 0 {
		order = stepChannels
	}
	var out []ContactPoint
	seen := map[eventsv1.Channel]bool{}
	for _, c := range order {
		if p, ok := first[c]; ok && !seen[c] {
			seen[c] = true
			out = append(out, p)
		}
	}
	return out
}

// StepOutcome says whether a recipient's exhaustion fails the whole step:
// it does when every recipient of the step is exhausted.
func StepOutcome(recipients, exhausted int) (stepFailed bool) {
	return recipients > 0 && exhausted >= recipients
}
