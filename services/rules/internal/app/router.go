package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/routing"
)

// Producer is the producer name on the events the service appends.
const Producer = "rules"

// Appender appends events to the log. Append returns only when the events
// are durable; an error wrapping fault.ErrUnavailable is an outage worth
// retrying, any other error is about the events themselves.
type Appender interface {
	Append(ctx context.Context, events ...*eventsv1.Event) error
}

// ErrUnroutable marks an event the router can never route (no bundle for the
// tenant, no alert id); the consumer dead-letters it with the reason.
var ErrUnroutable = errors.New("unroutable")

// RoutedEventID is the deterministic id of the AlertRouted caused by the
// event with id causeID.
func RoutedEventID(alertID, causeID string) string {
	return eventlog.ID(alertID, "routed", causeID)
}

// Router turns AlertRaised, AlertAmended and AlertQuarantined into
// AlertRouted. It keeps a small projection per alert, built from the
// AlertRouted events it sees (its own and, after a restart, the log's): the
// ids of routings already appended (so a redelivered cause is skipped) and
// the category in force (so an amendment never silently downgrades it).
type Router struct {
	bundles func() routing.Bundles
	out     Appender
	now     func() time.Time
	logger  *slog.Logger
	tracer  trace.Tracer

	routedCount  metric.Int64Counter
	skippedCount metric.Int64Counter

	// catchUp reads what another replica consumed (nil: no catch-up).
	catchUp RangeReader

	mu     sync.Mutex
	alerts map[string]*alertState
	// marks holds, per partition, the highest offset observed; tracking
	// says the marks cover the log (set once the rebuild has read it).
	marks    map[int]int64
	tracking bool
}

// RangeReader reads the events at offsets [from, to) of a partition of the
// event log, in order. An error means the range was not fully read.
type RangeReader interface {
	ReadRange(ctx context.Context, partition int, from, to int64, fn func(ev *eventsv1.Event, offset int64)) error
}

type alertState struct {
	routed   map[string]struct{} // AlertRouted event ids
	category eventsv1.Category
	local    string
	rank     uint32
	known    bool
	// referrer is the referrer id of the latest report of the finding
	// (raised, amended or quarantined): an amendment that names another
	// referrer is a clinical change.
	referrer string
}

// NewRouter returns a router appending to out, taking the bundles in force
// from bundles at each decision.
func NewRouter(bundles func() routing.Bundles, out Appender, now func() time.Time, logger *slog.Logger, tracer trace.Tracer, meter metric.Meter) (*Router, error) {
	r := &Router{bundles: bundles, out: out, now: now, logger: logger, tracer: tracer, alerts: map[string]*alertState{}, marks: map[int]int64{}}
	var err error
	if r.routedCount, err = meter.Int64Counter("herald_rules_alerts_routed_total",
		metric.WithDescription("AlertRouted events appended, by tenant, category and cause")); err != nil {
		return nil, fmt.Errorf("create routed counter: %w", err)
	}
	if r.skippedCount, err = meter.Int64Counter("herald_rules_duplicates_skipped_total",
		metric.WithDescription("causes skipped because their AlertRouted was already appended")); err != nil {
		return nil, fmt.Errorf("create skipped counter: %w", err)
	}
	return r, nil
}

// ObserveAt observes an event read at an offset of a partition (the rebuild).
func (r *Router) ObserveAt(ev *eventsv1.Event, partition int, offset int64) {
	r.Observe(ev)
	r.mark(partition, offset)
}

func (r *Router) mark(partition int, offset int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.marks[partition]; !ok || offset > m {
		r.marks[partition] = offset
	}
}

// TrackPartitions turns on catching up: the projection now reflects the log
// up to the marks (the rebuild has read it), and rr reads what lies between
// a mark and a delivery.
func (r *Router) TrackPartitions(rr RangeReader) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.catchUp, r.tracking = rr, true
}

// HandleAt handles an event delivered from an offset of a partition. When
// events lie between the last offset this router observed on the partition
// and this one (another replica consumed them before a rebalance gave the
// partition here), it reads and observes them first, so a cause that
// replica already routed is skipped and an amendment sees the category in
// force. A failed catch-up is an error worth retrying.
func (r *Router) HandleAt(ctx context.Context, ev *eventsv1.Event, partition int, offset int64) error {
	if err := r.catchUpTo(ctx, partition, offset); err != nil {
		return err
	}
	err := r.Handle(ctx, ev)
	r.mark(partition, offset)
	return err
}

// HandleRunAt handles a run of events delivered together from one
// partition, offsets[i] being the offset of evs[i], as HandleAt would one
// after another, except that their AlertRouted events are appended
// together: one append (one produce request) for the run, instead of one
// per cause. A cause of an alert whose routing in this run is not yet
// appended first has that routing appended and observed, so it is decided
// exactly as it would be alone. An error may come after part of the run is
// durable; handling the run again (or each of its events) skips what was
// appended (the routing ids are deterministic).
func (r *Router) HandleRunAt(ctx context.Context, evs []*eventsv1.Event, partition int, offsets []int64) error {
	if len(evs) == 0 {
		return nil
	}
	if err := r.catchUpTo(ctx, partition, offsets[0]); err != nil {
		return err
	}
	ctx, span := r.tracer.Start(ctx, "rules.route_run", trace.WithAttributes(attribute.Int("herald.events", len(evs))))
	defer span.End()
	var held []heldRouting
	inRun := map[string]bool{} // alerts with a routing held
	flush := func() error {
		if len(held) == 0 {
			return nil
		}
		routed := make([]*eventsv1.Event, len(held))
		for i, h := range held {
			routed[i] = h.routed
		}
		if err := r.out.Append(ctx, routed...); err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "append")
			return fmt.Errorf("append routing of %d alerts: %w", len(held), err)
		}
		for _, h := range held {
			r.routedDone(ctx, h.cause, h.routed, h.dec)
		}
		held = held[:0]
		clear(inRun)
		return nil
	}
	for _, ev := range evs {
		if inRun[ev.GetAlertId()] {
			if err := flush(); err != nil {
				return err
			}
		}
		routed, dec, err := r.decide(ctx, ev)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "route")
			return err
		}
		if routed != nil {
			held = append(held, heldRouting{cause: ev, routed: routed, dec: dec})
			inRun[ev.GetAlertId()] = true
		}
	}
	if err := flush(); err != nil {
		return err
	}
	r.mark(partition, offsets[len(offsets)-1])
	return nil
}

// heldRouting is a routing decided in a run and not yet appended.
type heldRouting struct {
	cause, routed *eventsv1.Event
	dec           routing.Decision
}

// catchUpTo reads and observes the events between the last offset this
// router observed on the partition and offset, when another replica
// consumed them before a rebalance gave the partition here.
func (r *Router) catchUpTo(ctx context.Context, partition int, offset int64) error {
	r.mu.Lock()
	mark, ok := r.marks[partition]
	rr, tracking := r.catchUp, r.tracking
	r.mu.Unlock()
	if !ok {
		mark = -1
	}
	if !tracking || rr == nil || offset <= mark+1 {
		return nil
	}
	n := 0
	err := rr.ReadRange(ctx, partition, mark+1, offset, func(e *eventsv1.Event, off int64) {
		r.ObserveAt(e, partition, off)
		n++
	})
	if err != nil {
		return fmt.Errorf("catch up on partition %d from offset %d to %d: %w", partition, mark+1, offset, err)
	}
	r.logger.InfoContext(ctx, "caught up on events consumed by another replica", "partition", partition, "from", mark+1, "to", offset, "events", n)
	return nil
}

// Observe applies an event to the projection: an AlertRouted records its
// id and category; an AlertClosed or AlertCancelled forgets the alert. Other events are
// ignored. It is idempotent.
func (r *Router) Observe(ev *eventsv1.Event) {
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRouted:
		r.mu.Lock()
		defer r.mu.Unlock()
		st := r.state(ev.GetAlertId())
		st.routed[ev.GetEventId()] = struct{}{}
		st.category = p.AlertRouted.GetCategory()
		st.local = p.AlertRouted.GetLocalCategory()
		st.rank = p.AlertRouted.GetCategoryRank()
		st.known = true
	case *eventsv1.Event_AlertRaised, *eventsv1.Event_AlertAmended, *eventsv1.Event_AlertQuarantined:
		r.mu.Lock()
		defer r.mu.Unlock()
		r.state(ev.GetAlertId()).referrer = referrerOf(ev)
	case *eventsv1.Event_AlertClosed, *eventsv1.Event_AlertCancelled:
		// The obligation ended: a new flagged report of the finding is a
		// new obligation, routed afresh rather than weighed against the
		// category of the old one.
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.alerts, ev.GetAlertId())
	}
}

func (r *Router) state(alertID string) *alertState {
	st, ok := r.alerts[alertID]
	if !ok {
		st = &alertState{routed: map[string]struct{}{}}
		r.alerts[alertID] = st
	}
	return st
}

// Alerts returns how many alerts the projection holds.
func (r *Router) Alerts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.alerts)
}

// Decide builds the AlertRouted event for a cause without appending it. It
// returns nil for events that need no routing, and for an AlertRaised of an
// alert already routed that does not upgrade its category (the same finding
// reported again, through another channel or as the final report). Errors wrapping
// ErrUnroutable can never succeed.
func (r *Router) Decide(ev *eventsv1.Event) (*eventsv1.Event, routing.Decision, error) {
	in, ok := causeInput(ev)
	if !ok {
		return nil, routing.Decision{}, nil
	}
	if ev.GetAlertId() == "" || ev.GetEventId() == "" {
		return nil, routing.Decision{}, fmt.Errorf("route event %q: alert_id and event_id are required: %w", ev.GetEventId(), ErrUnroutable)
	}
	if ev.GetOccurredAt() == nil {
		in.At = r.now()
	}
	reraised, sameReferrer := false, false
	if in.Kind == routing.KindAmended || in.Kind == routing.KindRaised {
		r.mu.Lock()
		if st, ok := r.alerts[ev.GetAlertId()]; ok && st.known {
			in.Previous = &routing.Previous{Category: st.category, Local: st.local, Rank: st.rank}
			sameReferrer = st.referrer == referrerOf(ev)
			if in.Kind == routing.KindRaised {
				// The finding is already routed: this report of it came by
				// another channel, or is the final after a preliminary. It is
				// weighed like an amendment and matters only if it upgrades.
				in.Kind, reraised = routing.KindAmended, true
			}
		}
		r.mu.Unlock()
	}
	dec, err := routing.Route(r.bundles(), in)
	if err != nil {
		if errors.Is(err, routing.ErrNoBundle) {
			return nil, dec, fmt.Errorf("route alert %s: %w: %w", ev.GetAlertId(), err, ErrUnroutable)
		}
		return nil, dec, fmt.Errorf("route alert %s: %w", ev.GetAlertId(), err)
	}
	if reraised && dec.Routed.GetCategoryRank() >= in.Previous.Rank {
		return nil, dec, nil
	}
	if in.Kind == routing.KindAmended && !reraised && in.Previous != nil && !dec.DowngradeRefused && sameReferrer &&
		dec.Routed.GetCategory() == in.Previous.Category && dec.Routed.GetLocalCategory() == in.Previous.Local {
		// An amendment that changes nothing clinically (same category,
		// same referrer) does not restart the ladder: the people already
		// told would be told again for nothing. It stays on the timeline
		// as AlertAmended. An upgrade, a refused downgrade (its reason is
		// recorded) or a new referrer re-routes at step 0.
		return nil, dec, nil
	}
	out := &eventsv1.Event{
		EventId:       RoutedEventID(ev.GetAlertId(), ev.GetEventId()),
		AlertId:       ev.GetAlertId(),
		Tenant:        ev.GetTenant(),
		OccurredAt:    timestamppb.New(r.now()),
		Producer:      Producer,
		SchemaVersion: 1,
		Policy:        dec.Ref,
		CausationId:   ev.GetEventId(),
		Payload:       &eventsv1.Event_AlertRouted{AlertRouted: dec.Routed},
	}
	return out, dec, nil
}

// Handle routes one event from the log. A cause whose AlertRouted was
// already appended is skipped; otherwise the AlertRouted is appended
// (durably) before Handle returns nil, so the offset is committed only
// after it. Errors wrapping ErrUnroutable are permanent.
func (r *Router) Handle(ctx context.Context, ev *eventsv1.Event) error {
	routed, dec, err := r.decide(ctx, ev)
	if err != nil || routed == nil {
		return err
	}
	if err := r.out.Append(ctx, routed); err != nil {
		return fmt.Errorf("append routing of alert %s: %w", ev.GetAlertId(), err)
	}
	r.routedDone(ctx, ev, routed, dec)
	return nil
}

// decide returns the AlertRouted to append for ev, or nil when there is
// none: ev is not a cause (it is observed), its routing was appended
// already, or it changes nothing clinically (observed).
func (r *Router) decide(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, routing.Decision, error) {
	switch ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised, *eventsv1.Event_AlertAmended, *eventsv1.Event_AlertQuarantined:
	default:
		r.Observe(ev)
		return nil, routing.Decision{}, nil
	}
	id := RoutedEventID(ev.GetAlertId(), ev.GetEventId())
	if r.done(ev.GetAlertId(), id) {
		r.skippedCount.Add(ctx, 1)
		return nil, routing.Decision{}, nil
	}
	ctx, span := r.tracer.Start(ctx, "rules.route", trace.WithAttributes(
		attribute.String("herald.alert_id", ev.GetAlertId()),
		attribute.String("herald.tenant", ev.GetTenant()),
		attribute.String("herald.cause", eventlog.TypeOf(ev)),
	))
	defer span.End()
	routed, dec, err := r.Decide(ev)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "route")
		return nil, dec, err
	}
	if routed == nil {
		// A repeat report or an amendment of a routed finding that
		// changes nothing clinically.
		span.SetAttributes(attribute.String("herald.outcome", "unchanged"))
		r.skippedCount.Add(ctx, 1)
		r.logger.InfoContext(ctx, "repeat report or amendment of a routed alert changes nothing clinically: not re-routed", "alert_id", ev.GetAlertId(), "tenant", ev.GetTenant(), "cause", eventlog.TypeOf(ev))
		r.Observe(ev)
		return nil, dec, nil
	}
	span.SetAttributes(
		attribute.String("herald.category", routed.GetAlertRouted().GetCategory().String()),
		attribute.String("herald.policy_id", dec.Ref.GetPolicyId()),
		attribute.String("herald.policy_version", dec.Ref.GetVersion()),
		attribute.String("herald.rule_id", routed.GetAlertRouted().GetRuleId()),
	)
	for _, id := range dec.RuleErrors {
		r.logger.WarnContext(ctx, "classification rule failed to evaluate; treated as no match", "tenant", ev.GetTenant(), "rule_id", id, "alert_id", ev.GetAlertId())
	}
	return routed, dec, nil
}

// routedDone observes a cause and its routing once the routing is durable,
// and counts and logs it.
func (r *Router) routedDone(ctx context.Context, ev, routed *eventsv1.Event, dec routing.Decision) {
	r.Observe(ev) // the report's referrer, once its routing is durable
	r.Observe(routed)
	category := routed.GetAlertRouted().GetCategory().String()
	r.routedCount.Add(ctx, 1, metric.WithAttributes(
		attribute.String("tenant", ev.GetTenant()),
		attribute.String("category", category),
		attribute.String("cause", eventlog.TypeOf(ev)),
	))
	r.logger.InfoContext(ctx, "alert routed", "alert_id", ev.GetAlertId(), "tenant", ev.GetTenant(), "category", category,
		"policy_id", dec.Ref.GetPolicyId(), "policy_version", dec.Ref.GetVersion(), "rule_id", routed.GetAlertRouted().GetRuleId())
}

// referrerOf is the referrer id a report names, "" if none.
func referrerOf(ev *eventsv1.Event) string {
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised:
		return p.AlertRaised.GetDetails().GetReferrer().GetId()
	case *eventsv1.Event_AlertAmended:
		return p.AlertAmended.GetDetails().GetReferrer().GetId()
	case *eventsv1.Event_AlertQuarantined:
		return p.AlertQuarantined.GetDetails().GetReferrer().GetId()
	}
	return ""
}

// done reports whether the AlertRouted with id was already appended.
func (r *Router) done(alertID, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.alerts[alertID]
	if !ok {
		return false
	}
	_, has := st.routed[id]
	return has
}

// causeInput is the routing input of an event that asks for routing
// (raised, amended, quarantined); ok is false for any other event.
func causeInput(ev *eventsv1.Event) (in routing.Input, ok bool) {
	in = routing.Input{Tenant: ev.GetTenant(), At: ev.GetOccurredAt().AsTime()}
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised:
		in.Kind, in.Details = routing.KindRaised, p.AlertRaised.GetDetails()
	case *eventsv1.Event_AlertAmended:
		in.Kind, in.Details = routing.KindAmended, p.AlertAmended.GetDetails()
	case *eventsv1.Event_AlertQuarantined:
		in.Kind, in.Details = routing.KindQuarantined, p.AlertQuarantined.GetDetails()
		for _, prob := range p.AlertQuarantined.GetProblems() {
			in.QuarantineFields = append(in.QuarantineFields, prob.GetField())
		}
	default:
		return in, false
	}
	return in, true
}
