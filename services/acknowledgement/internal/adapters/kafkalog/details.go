package kafkalog

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventlog"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

// Events reads back events of the log by position (app.EventReader), over
// connections it keeps.
type Events struct {
	topic string
	r     *eventlog.RecordReader
}

// NewEvents returns the reader of cfg's events topic. Close it when done.
func NewEvents(cfg eventlog.Config) *Events {
	return &Events{topic: cfg.EventsTopic, r: eventlog.NewRecordReader(cfg)}
}

// Close releases the reader's connections.
func (e *Events) Close() { e.r.Close() }

// ReadEvent reads the event at partition/offset.
func (e *Events) ReadEvent(ctx context.Context, partition int32, offset int64) (*eventsv1.Event, error) {
	_, value, err := e.r.Read(ctx, e.topic, int(partition), offset)
	if err != nil {
		return nil, err
	}
	var ev eventsv1.Event
	if err := proto.Unmarshal(value, &ev); err != nil {
		return nil, fmt.Errorf("decode the event at %d/%d: %w", partition, offset, err)
	}
	return &ev, nil
}

// Views submits reads of patient data to the audit intake
// (app.ViewRecorder).
type Views struct {
	w     *eventlog.Writer
	topic string
}

// NewViews returns the recorder writing to the intake topic through w.
func NewViews(w *eventlog.Writer, intakeTopic string) *Views { return &Views{w: w, topic: intakeTopic} }

// RecordView puts the entry on the audit intake, durably.
func (v *Views) RecordView(ctx context.Context, entry *auditv1.AuditRecord) error {
	return audit.Submit(ctx, v.w, v.topic, entry)
}
