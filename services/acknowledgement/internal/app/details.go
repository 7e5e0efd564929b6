package app

import (
	"context"
	"fmt"

	"github.com/herald-health/herald/platform/eventtype"
	"github.com/herald-health/herald/platform/fault"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
)

// Patient details (issue #20 item 8, #21). The acknowledgement service
// keeps no patient data: its projection holds where each event of an alert
// is on the log (the timeline's partition and offset). Asked for an
// alert's details, it reads back the last report event (AlertRaised,
// AlertAmended or AlertQuarantined) and returns its details as the log has
// them: the patient data sealed with the trust's key, which this service
// does not hold. Every such read is recorded in the audit trail before it
// is answered.

// EventReader reads back one event of the log by its position.
type EventReader interface {
	ReadEvent(ctx context.Context, partition int32, offset int64) (*eventsv1.Event, error)
}

// ViewRecorder records a read of patient data in the audit trail (durably,
// before the read is answered).
type ViewRecorder interface {
	RecordView(ctx context.Context, entry *auditv1.AuditRecord) error
}

// reportEvents are the events whose details are the alert's.
var reportEvents = map[string]bool{"AlertRaised": true, "AlertAmended": true, "AlertQuarantined": true}

// Details returns the details of the alert's last report event, after
// recording the read (viewID identifies this read; actor is the reader as
// verified). nil when the alert has no report event on the log.
func (a *App) Details(ctx context.Context, st *lifecycle.State, actor *auditv1.AuditActor, viewID string) (*eventsv1.AlertDetails, error) {
	if a.d.Events == nil || a.d.Views == nil {
		return nil, fault.Unavailable("patient details are not configured on this replica")
	}
	var at *eventsv1.Event
	tl := st.GetTimeline()
	for i := len(tl) - 1; i >= 0 && at == nil; i-- {
		e := tl[i]
		if !reportEvents[e.GetType()] || e.GetOffset() < 0 {
			continue
		}
		ev, err := a.d.Events.ReadEvent(ctx, e.GetPartition(), e.GetOffset())
		if err != nil {
			return nil, fmt.Errorf("details of alert %s: %w: %w", st.GetAlertId(), fault.Unavailable("the log could not be read"), err)
		}
		if ev.GetEventId() != e.GetEventId() || ev.GetAlertId() != st.GetAlertId() {
			return nil, fmt.Errorf("details of alert %s: event %s is not at %d/%d", st.GetAlertId(), e.GetEventId(), e.GetPartition(), e.GetOffset())
		}
		at = ev
	}
	if at == nil {
		return nil, nil
	}
	d := eventtype.Details(at)
	entry := audit.ViewedEntry(st.GetTenant(), st.GetAlertId(), viewID, "alert-details", actor, a.d.Clock.Now())
	if err := a.d.Views.RecordView(ctx, entry); err != nil {
		return nil, fmt.Errorf("details of alert %s: %w: %w", st.GetAlertId(), fault.Unavailable("the read could not be recorded in the audit trail"), err)
	}
	return d, nil
}

// RecordRead records a read that shows no patient data but is evidence
// (the audit export of an alert) in the audit trail, durably, before the
// read is answered.
func (a *App) RecordRead(ctx context.Context, entry *auditv1.AuditRecord) error {
	if a.d.Views == nil {
		return fault.Unavailable("the audit trail is not configured on this replica")
	}
	if err := a.d.Views.RecordView(ctx, entry); err != nil {
		return fmt.Errorf("%w: %w", fault.Unavailable("the read could not be recorded in the audit trail"), err)
	}
	return nil
}
