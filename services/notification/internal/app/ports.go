// Package app runs the notification pipeline: it applies consumed events to
// the projection, schedules step sends as durable jobs, works the jobs
// (resolve targets, dedup, rate limit, send, retry, record) and serves the
// gRPC API and the receipts endpoint. Decisions are made by package domain;
// this package performs their effects through small ports.
package app

import (
	"fmt"

	"context"
	"github.com/herald-health/herald/platform/fault"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// JobKind says what a job does.
type JobKind int

// Job kinds.
const (
	// JobStep resolves a step's targets and fans out one JobRecipient per person.
	JobStep JobKind = iota + 1
	// JobRecipient delivers a step to one person, contact point by contact point.
	JobRecipient
	// JobDigest sends one person, on one channel, the digest of the
	// messages their rate limit held back (PersonID, Channel).
	JobDigest
)

// Job is a unit of durable work. Its JSON form is its identity in the
// schedule, so the same job scheduled twice is one job.
type Job struct {
	Kind    JobKind `json:"k"`
	AlertID string  `json:"a"`
	// Round is the alert's routing round the job belongs to.
	Round    uint32 `json:"n,omitempty"`
	Step     uint32 `json:"s"`
	Repeat   uint32 `json:"r"`
	Failsafe bool   `json:"f,omitempty"`
	PersonID string `json:"p,omitempty"`
	Role     string `json:"o,omitempty"`
	Tenant   string `json:"t,omitempty"`
	// Cause is the id of the event that asked for the step.
	Cause string `json:"c,omitempty"`
	// Trace is the W3C traceparent the step was asked under.
	Trace string `json:"tp,omitempty"`
	// Critical marks the jobs of a CRITICAL alert: when jobs back up, the
	// store hands out due critical jobs before any other due job.
	Critical bool `json:"x,omitempty"`
	// Channel is the digest's channel (JobDigest only).
	Channel eventsv1.Channel `json:"ch,omitempty"`
	// Breach, when set, makes the job the notice of that clock's breach to
	// the people the policy names for it (never held back by the rate
	// limit, never failing the step).
	Breach eventsv1.ClockKind `json:"b,omitempty"`
	// Unlimited: the rate limit does not hold this job back (a message
	// whose digest failed goes to the next contact point at once).
	Unlimited bool `json:"u,omitempty"`
}

// DigestItem is a message held back by a person's rate limit, waiting in
// their digest on one channel. Address is contact data: never logged.
type DigestItem struct {
	NotificationID  string           `json:"nid"`
	AlertID         string           `json:"a"`
	Round           uint32           `json:"n,omitempty"`
	Step            uint32           `json:"s"`
	Repeat          uint32           `json:"r"`
	Failsafe        bool             `json:"f,omitempty"`
	PersonID        string           `json:"p"`
	Role            string           `json:"o,omitempty"`
	RecipientTenant string           `json:"t,omitempty"`
	Channel         eventsv1.Channel `json:"ch"`
	Address         string           `json:"ad"`
	Cause           string           `json:"c,omitempty"`
}

// DigestRef is one notification a digest merged.
type DigestRef struct {
	AlertID        string `json:"a"`
	NotificationID string `json:"nid"`
}

// Job is the recipient job of the item.
func (it DigestItem) Job(critical bool) Job {
	return Job{Kind: JobRecipient, AlertID: it.AlertID, Round: it.Round, Step: it.Step, Repeat: it.Repeat, Failsafe: it.Failsafe,
		Critical: critical, PersonID: it.PersonID, Role: it.Role, Tenant: it.RecipientTenant, Cause: it.Cause}
}

// Lease is a job this replica holds, leased until Until (whole
// milliseconds, as the schedule stores it).
type Lease struct {
	Job   Job
	Until time.Time
}

// Record is the dedup and status record of one notification id.
type Record struct {
	NotificationID  string             `json:"nid"`
	Round           uint32             `json:"round,omitempty"`
	AlertID         string             `json:"alert_id"`
	Tenant          string             `json:"tenant"`
	Step            uint32             `json:"step"`
	Repeat          uint32             `json:"repeat"`
	Failsafe        bool               `json:"failsafe,omitempty"`
	Breach          eventsv1.ClockKind `json:"breach,omitempty"`
	PersonID        string             `json:"person_id"`
	Role            string             `json:"role,omitempty"`
	RecipientTenant string             `json:"recipient_tenant,omitempty"`
	Channel         eventsv1.Channel   `json:"channel"`
	Phase           domain.Phase       `json:"phase"`
	Attempts        uint32             `json:"attempts"`
	LastError       string             `json:"last_error,omitempty"`
	ProviderID      string             `json:"provider_id,omitempty"`
	CreatedAt       time.Time          `json:"created_at"`
	UpdatedAt       time.Time          `json:"updated_at"`
	// Restored marks a "sending" record the rebuild restored from a
	// NotificationAttempted with no outcome (Redis was lost): unlike a
	// claim, it does not say the message went out (the attempt may have
	// been stopped, or its worker may have died before the claim). Once
	// its send must have ended and no live worker recorded an outcome, the
	// message is sent (a copy is possible only if that worker died
	// mid-send: after a Redis loss, a second message is chosen over none).
	Restored bool `json:"restored,omitempty"`
	// InDoubt counts the times the message was sent again because an
	// attempt's outcome was unknown (capped by Options.InDoubtResends).
	InDoubt uint32 `json:"in_doubt,omitempty"`
}

// Store keeps the projection, the records and the job schedule. It is a
// cache rebuilt from the log (see the README); it is shared by replicas.
//
// Every method returns an error only when the store cannot be reached or
// the data is corrupt; callers treat it as transient.
type Store interface {
	// Alert returns the projection of an alert (zero Alert if unknown).
	Alert(ctx context.Context, id string) (domain.Alert, error)
	// ProjectedAlert is Alert read together with the epoch, in one round
	// trip: projected is false (and the alert zero) when the store holds
	// no complete projection, which must then be rebuilt first.
	ProjectedAlert(ctx context.Context, id string) (a domain.Alert, projected bool, err error)
	// CreateAlert stores a as the projection of an alert the store does not
	// hold yet, in one round trip: created is false (and nothing written)
	// when the store holds the alert already, projected false when the
	// store holds no complete projection.
	CreateAlert(ctx context.Context, a domain.Alert) (created, projected bool, err error)
	// SaveAlert stores the projection and, atomically with it, schedules
	// jobs (due at the given time) that are not scheduled yet. added[i]
	// reports whether jobs[i] was newly scheduled (false: it already was).
	SaveAlert(ctx context.Context, a domain.Alert, jobs []Job, due time.Time) (added []bool, err error)
	// Claim leases up to n jobs due at now, critical jobs first: each is
	// hidden until now+lease and comes back if not Done or Rescheduled by
	// then.
	Claim(ctx context.Context, now time.Time, n int, lease time.Duration) ([]Job, error)
	// NextDue returns when the earliest job is due (ok false if none).
	NextDue(ctx context.Context) (time.Time, bool, error)
	// Reschedule makes a claimed job due at at.
	Reschedule(ctx context.Context, j Job, at time.Time) error
	// Done removes a job.
	Done(ctx context.Context, j Job) error
	// Renew extends leases: each job whose schedule entry still holds the
	// lease end it was given (Lease.Until; not done, rescheduled or claimed
	// since) is leased until until. renewed[i] reports whether leases[i]
	// was.
	Renew(ctx context.Context, leases []Lease, until time.Time) (renewed []bool, err error)
	// FanOut records the recipients of a step, adds their jobs leased until
	// leasedUntil (the caller works them at once) and removes the step job.
	FanOut(ctx context.Context, step Job, recipients []Job, leasedUntil time.Time) error
	// Exhaust records that personID is exhausted for the step of j and
	// returns how many recipients the step has and how many are exhausted.
	Exhaust(ctx context.Context, j Job) (recipients, exhausted int, err error)
	// ClaimAttempt makes attempt number r.Attempts of r's notification id
	// this caller's for ttl and, in the same round trip, stores r (its
	// "sending" marker) as PutRecord does: false, and r not stored, if
	// another worker claimed that attempt first (two jobs racing for the
	// same message: only one sends).
	ClaimAttempt(ctx context.Context, r Record, ttl time.Duration) (bool, error)
	// DeferToDigest puts it in its person's digest on its channel and
	// removes the recipient job j, atomically; the digest job is scheduled
	// at at unless one is scheduled already. It returns when the digest
	// is due.
	DeferToDigest(ctx context.Context, j Job, it DigestItem, at time.Time) (time.Time, error)
	// DigestItems lists what waits in a person's digest on a channel.
	DigestItems(ctx context.Context, personID string, ch eventsv1.Channel) ([]DigestItem, error)
	// ClaimDigest counts a claim of the sending of digest id (kept for
	// ttl) and returns the count: 1 for the first claim; more means an
	// earlier claimant stopped before recording the outcome (in doubt).
	ClaimDigest(ctx context.Context, id string, ttl time.Duration) (uint32, error)
	// PutDigestRefs remembers, for ttl, which notifications digest id
	// merged, so that a provider's receipt of the digest reaches each.
	PutDigestRefs(ctx context.Context, digestID string, refs []DigestRef, ttl time.Duration) error
	// DigestRefs returns what digest id merged (nil if unknown).
	DigestRefs(ctx context.Context, digestID string) ([]DigestRef, error)
	// FinishDigest removes the items nids from the digest of job j and,
	// when nothing is left, the digest job; items added meanwhile keep the
	// job, due at next.
	FinishDigest(ctx context.Context, j Job, nids []string, next time.Time) error
	// Record returns the record of a notification id (Phase 0 if none).
	Record(ctx context.Context, alertID, nid string) (Record, error)
	// PutRecord writes a record and indexes it by alert and by id.
	PutRecord(ctx context.Context, r Record) error
	// PutRecordDone is PutRecord and then Done(j), in one round trip.
	PutRecordDone(ctx context.Context, r Record, j Job) error
	// RestoreRecord is PutRecord for the rebuild: it does not write r over
	// a newer record of its notification (a later attempt, or an outcome or
	// a live worker's claim where r is an attempt restored in flight): one
	// a live worker wrote after Redis was lost is newer than the log the
	// rebuild read (a send recorded between the read and the write).
	RestoreRecord(ctx context.Context, r Record) error
	// Records lists an alert's records, oldest first.
	Records(ctx context.Context, alertID string) ([]Record, error)
	// AlertOf returns the alert id of a notification id ("" if unknown).
	AlertOf(ctx context.Context, nid string) (string, error)
	// Epoch reports whether the store holds a complete projection (it is
	// set after a rebuild; a flushed or new Redis has none).
	Epoch(ctx context.Context) (bool, error)
	// SetEpoch marks the projection complete.
	SetEpoch(ctx context.Context) error
	// LockRebuild takes the rebuild lock for ttl under token; false if
	// another holds it.
	LockRebuild(ctx context.Context, token string, ttl time.Duration) (bool, error)
	// RenewRebuild extends the lock to ttl from now if token still holds
	// it; false if it does not (it expired, another took it).
	RenewRebuild(ctx context.Context, token string, ttl time.Duration) (bool, error)
	// UnlockRebuild releases the rebuild lock if token holds it.
	UnlockRebuild(ctx context.Context, token string) error
}

// Recipient is a resolved person with contact points in preference order.
type Recipient struct {
	PersonID string
	Role     string
	Tenant   string
	Points   []domain.ContactPoint
}

// Resolver turns a step's targets into people and contact points at an
// instant (the rules service's ResolveTargets). An error means resolution
// could not be done now and may be retried.
type Resolver interface {
	Resolve(ctx context.Context, a domain.Alert, step domain.Step, at time.Time) ([]Recipient, error)
}

// LogTail reads what the log holds for one alert beyond what the
// projection holds (eventlog.Tail.Read): it learns the consumer group's
// committed offset, calls project (which reads the projection), then
// returns the alert's events at or after that offset up to the end of the
// log as of the call. Events the projection has applied already come back
// too; the fold skips them by id. An error of project is returned as it is;
// another error means the log could not be read, or the group is too far
// behind to read the gap (wrapping fault.ErrUnavailable).
type LogTail interface {
	Unapplied(ctx context.Context, alertID string, project func(context.Context) error) ([]*eventsv1.Event, error)
}

// Appender appends events durably (acks=all); an error means nothing may be
// assumed written and the same events may be appended again.
type Appender interface {
	Append(ctx context.Context, events ...*eventsv1.Event) error
}

// unavailable marks a store or peer failure as an outage for the consumer
// (retried until it recovers rather than dead-lettered).
// ErrProjectionLost is returned by Handle when the store holds no complete
// projection (a new or flushed Redis): rebuild it with EnsureProjection,
// then handle the event again. It is an outage (fault.ErrUnavailable), so
// a consumer that only retries still never drops the event.
var ErrProjectionLost = fmt.Errorf("the notification projection is missing from the store: %w", fault.ErrUnavailable)

func unavailable(err error) error { return fmt.Errorf("%w: %w", fault.ErrUnavailable, err) }
