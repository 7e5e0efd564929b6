// Package kafkalog connects the acknowledgement service to the event log:
// the compacted state topic (publish the latest AlertState of an alert, read
// the whole topic back for a rebuild) and the consumer that feeds the alert
// events to the application.
package kafkalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"google.golang.org/protobuf/proto"
)

// StateTopic publishes to and reads from the compacted state topic
// (herald.alert-state.v1, key = alert id, value = AlertState protobuf).
type StateTopic struct {
	cfg    eventlog.Config
	writer *eventlog.Writer
}

// NewStateTopic returns the state topic of cfg written through w.
func NewStateTopic(cfg eventlog.Config, w *eventlog.Writer) *StateTopic {
	return &StateTopic{cfg: cfg, writer: w}
}

// Publish implements app.StateTopic; it returns once the record is durable.
func (s *StateTopic) Publish(ctx context.Context, st *lifecycle.State) error {
	b, err := proto.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state of alert %s: %w", st.GetAlertId(), err)
	}
	if err := s.writer.Put(ctx, s.cfg.StateTopic, st.GetAlertId(), b); err != nil {
		if errors.Is(err, fault.ErrUnavailable) {
			return err
		}
		return fault.Unavailable(fmt.Sprintf("put state of alert %s on %s: %v", st.GetAlertId(), s.cfg.StateTopic, err))
	}
	return nil
}

// ReadAll implements app.StateTopic: every record from the beginning up to
// the end the topic has now, tombstones skipped. An undecodable record is an
// error (a rebuild must not silently lose an alert).
func (s *StateTopic) ReadAll(ctx context.Context, fn func(*lifecycle.State) error) error {
	return eventlog.ReadTopic(ctx, s.cfg, s.cfg.StateTopic, func(key, value []byte, partition int, offset int64) error {
		if value == nil {
			return nil
		}
		st := &lifecycle.State{}
		if err := proto.Unmarshal(value, st); err != nil {
			return fmt.Errorf("decode state of alert %s at %s/%d@%d: %w", key, s.cfg.StateTopic, partition, offset, err)
		}
		return fn(st)
	})
}

// Tail implements app.LogTail with eventlog.Tail: the events of an alert
// that the consumer group may not have applied to the projection yet.
type Tail struct {
	t *eventlog.Tail
}

// NewTail returns the tail of cfg's events topic for the consumer group.
func NewTail(cfg eventlog.Config, group string) *Tail {
	return &Tail{t: eventlog.NewTail(cfg, group)}
}

// maxTail bounds the records read for one decision: beyond it the
// projection is far behind (a catch-up), and the decision waits for it.
const maxTail = 20000

// Unapplied implements app.LogTail.
func (t *Tail) Unapplied(ctx context.Context, alertID string, project func(context.Context) (int64, error)) ([]app.Logged, error) {
	ds, err := t.t.Read(ctx, alertID, maxTail, project)
	if err != nil {
		return nil, err
	}
	out := make([]app.Logged, len(ds))
	for i, d := range ds {
		out[i] = app.Logged{Event: d.Event, Pos: lifecycle.Position{Partition: int32(d.Partition), Offset: d.Offset}}
	}
	return out, nil
}

// Close releases the tail's connections.
func (t *Tail) Close() { t.t.Close() }

// Handler adapts the application to eventlog.Consume.
func Handler(a *app.App) eventlog.Handler {
	return func(ctx context.Context, d eventlog.Delivery) error {
		err := a.HandleEvent(ctx, d.Event, lifecycle.Position{Partition: int32(d.Partition), Offset: d.Offset})
		if err != nil && app.IsPermanent(err) {
			return eventlog.Permanent(err)
		}
		return err
	}
}
