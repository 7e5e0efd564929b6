package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Deciding on fresh state (issue #17). The projection in Redis lags the log
// whenever the replica that owns an alert's partition is slow, dead (until
// the consumer group moves its partitions, a session timeout), rebalancing
// or catching up. A timer that fires, a command, or the watchdog must not
// decide on such a state: an escalation decided on a projection that has
// not applied an AlertAcknowledged already in the log pages the next
// clinician for an alert someone accepted.
//
// So every decision starts from current: the projection's state plus the
// alert's events the consumer group has not committed past (read from the
// log, LogTail), folded in log order by the same pure fold the consumer
// uses. Everything below the group's committed offset is in the projection
// (a record is committed only after its handler stored its state); what is
// at or above it is read. The result is the alert as the log has it when
// the decision starts; an event appended after that races the decision,
// and the fold's "first in the log wins" settles it.

// errLogUnread marks a failure to read the alert's events from the log
// (Kafka unavailable, or the group too far behind to read the gap): the
// decision waits.
var errLogUnread = errors.New("the log of the alert could not be read")

// current returns the alert's state as the log has it now (nil: unknown)
// and how many of its events the projection had not applied yet.
func (a *App) current(ctx context.Context, alertID string) (*lifecycle.State, int, error) {
	var (
		st      *lifecycle.State
		readErr error
	)
	read := func(ctx context.Context) (int64, error) {
		if st, readErr = a.d.States.Get(ctx, alertID); readErr != nil {
			readErr = fmt.Errorf("read alert %s: %w", alertID, readErr)
			return 0, readErr
		}
		if st.GetEventCount() > 0 {
			return st.GetOffset(), nil
		}
		return -1, nil
	}
	if a.d.Tail == nil {
		_, err := read(ctx)
		return st, 0, err
	}
	// The tail learns the group's committed offset before read reads the
	// projection (eventlog.Tail.Read): nothing committed in between is
	// missed.
	pending, err := a.d.Tail.Unapplied(ctx, alertID, read)
	if err != nil {
		if readErr != nil {
			return nil, 0, readErr
		}
		return nil, 0, fmt.Errorf("alert %s: %w: %w", alertID, errLogUnread, err)
	}
	n := 0
	for _, l := range pending {
		var applied bool
		if st, applied = lifecycle.Apply(st, l.Event, l.Pos); applied {
			n++
		}
	}
	if n > 0 {
		trace.SpanFromContext(ctx).SetAttributes(attribute.Int("projection.behind", n))
		a.metrics.ahead.Add(ctx, 1, metric.WithAttributes(attribute.String("tenant", st.GetTenant())))
	}
	return st, n, nil
}
