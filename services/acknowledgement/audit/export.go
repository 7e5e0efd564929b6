package audit

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventtype"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// ErrNoEvents: the alert named has no event on the log.
var ErrNoEvents = errors.New("no such alert on the event log")

// Export is the evidential record of one alert.
type Export struct {
	AlertID     string    `json:"alert_id"`
	Trust       string    `json:"trust"`
	GeneratedAt time.Time `json:"generated_at"`
	// PolicyVersions are the policy versions the alert's events name.
	PolicyVersions []string         `json:"policy_versions"`
	Events         []ExportEvent    `json:"events"`
	Deliveries     []ExportDelivery `json:"deliveries"`
	Proof          ExportProof      `json:"proof"`
}

// ExportEvent is one event of the alert, without patient data.
type ExportEvent struct {
	EventID    string       `json:"event_id"`
	Type       string       `json:"type"`
	OccurredAt time.Time    `json:"occurred_at"`
	Producer   string       `json:"producer"`
	Policy     string       `json:"policy,omitempty"`
	Actor      *ExportActor `json:"actor,omitempty"`
	Summary    string       `json:"summary"`
	// AuditSequence is the event's record in the trust's chain (0: not a
	// command, so not chained).
	AuditSequence uint64 `json:"audit_sequence,omitempty"`
	Where         string `json:"log_position"`
}

// ExportActor is who acted, as the audit record holds it.
type ExportActor struct {
	PersonID         string `json:"person_id,omitempty"`
	Role             string `json:"role,omitempty"`
	IdentityProvider string `json:"identity_provider,omitempty"`
	Issuer           string `json:"issuer,omitempty"`
	Subject          string `json:"subject,omitempty"`
	ACR              string `json:"acr,omitempty"`
	RelayingService  string `json:"relaying_service,omitempty"`
}

// ExportDelivery is the last known state of one notification.
type ExportDelivery struct {
	NotificationID string    `json:"notification_id"`
	Recipient      string    `json:"recipient,omitempty"`
	Channel        string    `json:"channel,omitempty"`
	State          string    `json:"state"`
	At             time.Time `json:"at"`
}

// ExportProof is the chain proof of the alert's records.
type ExportProof struct {
	Records []ExportRecord `json:"records"`
	// Anchor is the first anchor at or after the alert's last record (nil:
	// not anchored yet).
	Anchor *ExportAnchor `json:"anchor,omitempty"`
	// Verified says the whole chain of the trust verified, and Problems
	// what did not.
	Verified bool     `json:"chain_verified"`
	Problems []string `json:"problems,omitempty"`
	Head     uint64   `json:"chain_head"`
}

// ExportRecord is one audit record of the alert.
type ExportRecord struct {
	Sequence      uint64       `json:"sequence"`
	EventID       string       `json:"event_id"`
	EventType     string       `json:"event_type"`
	OccurredAt    time.Time    `json:"occurred_at"`
	Actor         *ExportActor `json:"actor,omitempty"`
	PolicyVersion string       `json:"policy_version,omitempty"`
	Detail        string       `json:"detail,omitempty"`
	PrevHash      string       `json:"prev_hash"`
	Hash          string       `json:"hash"`
	Where         string       `json:"stream_position"`
}

// ExportAnchor is an anchor of the chain.
type ExportAnchor struct {
	Sequence   uint64    `json:"sequence"`
	HeadHash   string    `json:"head_hash"`
	AnchoredAt time.Time `json:"anchored_at"`
	Reason     string    `json:"reason"`
}

func exportActor(a *auditv1.AuditActor) *ExportActor {
	if a == nil {
		return nil
	}
	return &ExportActor{PersonID: a.GetPersonId(), Role: a.GetRole(), IdentityProvider: a.GetIdentityProvider(),
		Issuer: a.GetIssuer(), Subject: a.GetSubject(), ACR: a.GetAcr(), RelayingService: a.GetRelayingService()}
}

// ExportAlert reads the alert's events from its partition of the log and
// the trail, and assembles the evidential record of the alert (heraldctl
// audit export; acknowledgement's ExportAudit, for the console). It holds
// no patient data: ids, actors, times, policy versions, delivery states
// and hashes. It reads the whole trail (to verify the trust's chain), so
// it is an on-demand export, not a page read.
func ExportAlert(ctx context.Context, cfg eventlog.Config, records, anchors, alertID string) (*Export, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	events, forged, err := alertEvents(ctx, cfg, alertID)
	if err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("alert %s has no events on %s: %w", alertID, cfg.EventsTopic, ErrNoEvents)
	}
	tr, err := ReadTrail(ctx, cfg, records, anchors)
	if err != nil {
		return nil, err
	}
	x := &Export{AlertID: alertID, Trust: events[0].ev.GetTenant(), GeneratedAt: time.Now().UTC()}
	rep := tr.Verify(x.Trust)
	x.Proof.Verified = rep.OK() && len(forged) == 0
	for _, p := range rep.Problems {
		x.Proof.Problems = append(x.Proof.Problems, p.String())
	}
	x.Proof.Problems = append(x.Proof.Problems, forged...)
	for _, t := range rep.Trusts {
		if t.Trust == x.Trust {
			x.Proof.Head = t.Head
		}
	}
	bySeq := map[string]uint64{}
	var last uint64
	seenSeq := map[uint64]bool{}
	for _, p := range tr.Records {
		r := p.Record
		if r.GetAlertId() != alertID || r.GetTrust() != x.Trust || seenSeq[r.GetSequence()] {
			continue
		}
		seenSeq[r.GetSequence()] = true
		bySeq[r.GetEventId()] = r.GetSequence()
		last = max(last, r.GetSequence())
		x.Proof.Records = append(x.Proof.Records, ExportRecord{Sequence: r.GetSequence(), EventID: r.GetEventId(), EventType: r.GetEventType(),
			OccurredAt: r.GetOccurredAt().AsTime(), Actor: exportActor(r.GetActor()), PolicyVersion: r.GetPolicyVersion(), Detail: r.GetDetail(),
			PrevHash: hex.EncodeToString(r.GetPrevHash()), Hash: hex.EncodeToString(r.GetHash()), Where: p.Where})
	}
	slices.SortFunc(x.Proof.Records, func(a, b ExportRecord) int { return int(a.Sequence) - int(b.Sequence) })
	for i, a := range tr.Anchors {
		if a.GetTrust() != x.Trust || a.GetSequence() < last || last == 0 {
			continue
		}
		if x.Proof.Anchor == nil || a.GetSequence() < x.Proof.Anchor.Sequence {
			x.Proof.Anchor = &ExportAnchor{Sequence: a.GetSequence(), HeadHash: hex.EncodeToString(a.GetHeadHash()),
				Reason: a.GetReason(), AnchoredAt: tr.AnchoredAt[i]}
		}
	}
	recs := map[string]*auditv1.AuditRecord{}
	for _, p := range tr.Records {
		if p.Record.GetAlertId() == alertID {
			recs[p.Record.GetEventId()] = p.Record
		}
	}
	policies := map[string]bool{}
	deliveries := map[string]*ExportDelivery{}
	var order []string
	for _, le := range events {
		ev := le.ev
		xe := ExportEvent{EventID: ev.GetEventId(), Type: eventlog.TypeOf(ev), OccurredAt: ev.GetOccurredAt().AsTime(), Producer: ev.GetProducer(),
			Summary: eventtype.Summary(ev), AuditSequence: bySeq[ev.GetEventId()], Where: le.where}
		if p := ev.GetPolicy(); p.GetVersion() != "" {
			xe.Policy = p.GetPolicyId() + " v" + p.GetVersion()
			policies[xe.Policy] = true
		}
		if r := ev.GetAlertRouted(); r != nil {
			v := r.GetPolicy().GetRef().GetPolicyId() + " v" + r.GetPolicy().GetRef().GetVersion()
			policies[v] = true
			if xe.Policy == "" {
				xe.Policy = v
			}
		}
		if r, ok := recs[ev.GetEventId()]; ok {
			xe.Actor = exportActor(r.GetActor())
		}
		x.Events = append(x.Events, xe)
		id, d := deliveryOf(ev)
		if id != "" {
			if deliveries[id] == nil {
				order = append(order, id)
				deliveries[id] = &ExportDelivery{NotificationID: id}
			}
			cur := deliveries[id]
			cur.State, cur.At = d.State, d.At
			if d.Recipient != "" {
				cur.Recipient = d.Recipient
			}
			if d.Channel != "" {
				cur.Channel = d.Channel
			}
		}
	}
	for _, id := range order {
		x.Deliveries = append(x.Deliveries, *deliveries[id])
	}
	x.PolicyVersions = slices.Sorted(func(yield func(string) bool) {
		for p := range policies {
			if !yield(p) {
				return
			}
		}
	})
	return x, nil
}

func deliveryOf(ev *eventsv1.Event) (string, ExportDelivery) {
	at := ev.GetOccurredAt().AsTime()
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_NotificationSent:
		n := p.NotificationSent
		return n.GetNotificationId(), ExportDelivery{State: "sent", At: at, Recipient: n.GetRecipient().GetPersonId(), Channel: channelName(n.GetChannel())}
	case *eventsv1.Event_NotificationFailed:
		n := p.NotificationFailed
		return n.GetNotificationId(), ExportDelivery{State: "failed", At: at, Recipient: n.GetRecipient().GetPersonId(), Channel: channelName(n.GetChannel())}
	case *eventsv1.Event_NotificationDelivered:
		n := p.NotificationDelivered
		return n.GetNotificationId(), ExportDelivery{State: "delivered", At: at, Channel: channelName(n.GetChannel())}
	}
	return "", ExportDelivery{}
}

type loggedEvent struct {
	ev    *eventsv1.Event
	where string
}

// alertEvents reads the alert's partition of the event log (key = alert id)
// and returns its events in log order, each once. With a key set
// (cfg's verify keys) an event of the alert not signed by a service that
// may produce it is left out and named in forged.
func alertEvents(ctx context.Context, cfg eventlog.Config, alertID string) (events []loggedEvent, forged []string, err error) {
	r := eventlog.NewPartitionReader(cfg, cfg.EventsTopic)
	defer r.Close()
	err = r.Verifying(eventlog.ReadOptions{Events: true, Path: "audit_export", Refused: func(partition int, offset int64, value []byte, err error) {
		var ev eventsv1.Event
		if proto.Unmarshal(value, &ev) == nil && ev.GetAlertId() == alertID {
			forged = append(forged, fmt.Sprintf("event %s (%s) at %s/%d/%d: forged, left out: %v", ev.GetEventId(), eventlog.TypeOf(&ev), cfg.EventsTopic, partition, offset, err))
		}
	}})
	if err != nil {
		return nil, nil, err
	}
	n, err := r.Partitions(ctx)
	if err != nil {
		return nil, nil, err
	}
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	pn := (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(alertID)}, parts...)
	first, end, err := r.Bounds(ctx, pn)
	if err != nil {
		return nil, nil, err
	}
	var out []loggedEvent
	seen := map[string]bool{}
	err = r.Read(ctx, pn, first, end, func(key, value []byte, partition int, offset int64) error {
		if !bytes.Equal(key, []byte(alertID)) {
			return nil
		}
		var ev eventsv1.Event
		if err := proto.Unmarshal(value, &ev); err != nil || seen[ev.GetEventId()] {
			return nil
		}
		seen[ev.GetEventId()] = true
		out = append(out, loggedEvent{ev: &ev, where: fmt.Sprintf("%s/%d/%d", cfg.EventsTopic, partition, offset)})
		return nil
	})
	return out, forged, err
}

//go:embed export.html.tmpl
var exportHTML string

var exportTemplate = template.Must(template.New("export").Funcs(template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
	},
}).Parse(exportHTML))

// RenderExportHTML writes the export as a self-contained HTML page (no
// scripts, no external resources).
func RenderExportHTML(w io.Writer, x *Export) error {
	if err := exportTemplate.Execute(w, x); err != nil {
		return fmt.Errorf("render export of %s: %w", x.AlertID, err)
	}
	return nil
}

func channelName(c eventsv1.Channel) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CHANNEL_"))
}
