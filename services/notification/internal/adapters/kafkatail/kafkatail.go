// Package kafkatail implements the engine's LogTail with eventlog.Tail:
// the events of an alert that the notification consumer group may not have
// applied to the projection yet, read from the log for a send decision.
package kafkatail

import (
	"context"

	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// maxTail bounds the records read for one decision: beyond it the group is
// far behind (a catch-up) and the decision waits for it.
const maxTail = 20000

// Tail is the log tail of one consumer group.
type Tail struct {
	t *eventlog.Tail
}

// New returns the tail of cfg's events topic for the consumer group.
func New(cfg eventlog.Config, group string) *Tail {
	return &Tail{t: eventlog.NewTail(cfg, group)}
}

// Unapplied implements app.LogTail: the group's committed offset is read
// before project reads the projection (eventlog.Tail.Read).
func (t *Tail) Unapplied(ctx context.Context, alertID string, project func(context.Context) error) ([]*eventsv1.Event, error) {
	ds, err := t.t.Read(ctx, alertID, maxTail, func(ctx context.Context) (int64, error) { return -1, project(ctx) })
	if err != nil {
		return nil, err
	}
	out := make([]*eventsv1.Event, len(ds))
	for i, d := range ds {
		out[i] = d.Event
	}
	return out, nil
}

// Close releases the tail's connections.
func (t *Tail) Close() { t.t.Close() }
