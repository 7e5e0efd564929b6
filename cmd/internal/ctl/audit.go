package ctl

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

func auditCommand() command {
	return command{
		name:    "audit",
		summary: "verify the tamper-evident audit trail, anchor it, export one alert's evidential record",
		usage: `heraldctl audit: the audit trail (herald.audit.v1, chained per trust, anchored on herald.audit-anchors.v1).

  heraldctl audit verify [-trust T]                 recompute every chain (or trust T's) and check the anchors;
                                                    exit 1 naming the sequence of each modified, removed,
                                                    inserted, reordered or truncated record
  heraldctl audit anchor [-trust T]                 verify, then anchor each chain's head now (on demand)
  heraldctl audit export [-format json|html] [-o FILE] ALERT_ID
                                                    the evidential record of one alert: every event (who,
                                                    when, under which policy version, delivery states) with
                                                    the chain proof (its records' hashes and the anchor that
                                                    covers them); html is a self-contained page

Reads Kafka directly (as an operator's principal: HERALD_CTL_KAFKA_SASL_USER, ...). Nothing printed
holds patient data: ids, actors, times, versions and hashes only.
`,
		run: runAudit,
	}
}

func runAudit(ctx context.Context, e *env, args []string) error {
	c := auditCommand()
	if len(args) == 0 {
		return usageError("give a subcommand: verify, anchor or export")
	}
	sub, args := args[0], args[1:]
	fs := newFlags(c, e)
	brokers := config.StringList(strings.Split(e.addrs.kafka, ","))
	fs.Var(&brokers, "brokers", "Kafka brokers")
	trust := fs.String("trust", "", "only this trust's chain (ODS code)")
	format := fs.String("format", "json", "export format: json or html")
	outFile := fs.String("o", "", "write the export to this file (default: standard output)")
	eventsTopic := fs.String("events-topic", eventlog.TopicEvents, "the alert event log")
	recordsTopic := fs.String("records-topic", "", "the audit stream (default: the one of -events-topic, "+audit.TopicRecords+")")
	anchorsTopic := fs.String("anchors-topic", "", "the anchor topic (default: the one of -events-topic, "+audit.TopicAnchors+")")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *recordsTopic == "" {
		*recordsTopic = audit.TopicsFor(*eventsTopic).Records
	}
	if *anchorsTopic == "" {
		*anchorsTopic = audit.TopicsFor(*eventsTopic).Anchors
	}
	conn, err := net.DialTimeout("tcp", brokers[0], 3*time.Second)
	if err != nil {
		return fmt.Errorf("the Kafka broker %s (address from %s) is not reachable: is Herald running (make run)? Otherwise pass -brokers or set HERALD_CTL_KAFKA", brokers[0], e.addrs.from)
	}
	_ = conn.Close()
	cfg, err := kafkaConfig(brokers, *eventsTopic)
	if err != nil {
		return err
	}
	switch sub {
	case "verify":
		rep, err := readAndVerify(ctx, cfg, *recordsTopic, *anchorsTopic, *trust)
		if err != nil {
			return err
		}
		printReport(e.out, rep)
		if !rep.OK() {
			return fmt.Errorf("the audit trail fails verification: %d problem(s), the first at trust %s sequence %d (%s)",
				len(rep.Problems), rep.Problems[0].Trust, rep.Problems[0].Sequence, rep.Problems[0].Kind)
		}
		return nil
	case "anchor":
		return anchorNow(ctx, e, cfg, *recordsTopic, *anchorsTopic, *trust)
	case "export":
		id, err := oneArg(fs, "alert id")
		if err != nil {
			return err
		}
		if *format != "json" && *format != "html" {
			return usageError("-format must be json or html")
		}
		x, err := exportAlert(ctx, cfg, *recordsTopic, *anchorsTopic, id)
		if err != nil {
			return err
		}
		w := e.out
		if *outFile != "" {
			f, err := os.Create(*outFile)
			if err != nil {
				return fmt.Errorf("create %s: %w", *outFile, err)
			}
			defer f.Close()
			w = f
		}
		if *format == "html" {
			return RenderExportHTML(w, x)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(x)
	}
	return usageError(fmt.Sprintf("unknown audit subcommand %q: verify, anchor or export", sub))
}

func readAndVerify(ctx context.Context, cfg eventlog.Config, records, anchors, trust string) (audit.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	tr, err := audit.ReadTrail(ctx, cfg, records, anchors)
	if err != nil {
		return audit.Report{}, err
	}
	return tr.Verify(trust), nil
}

func printReport(w io.Writer, rep audit.Report) {
	for _, t := range rep.Trusts {
		fmt.Fprintf(w, "trust %s: %d records (head %d, %s), %d duplicate deliveries, %d anchors (highest %d)\n",
			t.Trust, t.Records, t.Head, shortHex(t.HeadHash), t.Duplicates, t.Anchors, t.Anchored)
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(w, "PROBLEM", p.String())
	}
	if rep.OK() {
		fmt.Fprintln(w, "audit trail verified: every chain is intact and reaches its anchors")
	}
}

func shortHex(b []byte) string {
	s := hex.EncodeToString(b)
	if len(s) > 16 {
		return s[:16]
	}
	return s
}

// anchorProducer names heraldctl's on-demand anchors: acknowledgement's
// records (the anchors topic is its), written by the tool. With
// HERALD_CTL_EVENT_SIGNING_KEY_FILE (acknowledgement's key) they are signed
// as the services' anchors are; unsigned, a verifying reader reports them.
const anchorProducer = "acknowledgement/heraldctl"

// anchorNow verifies the trail and then writes each chain's head as an
// on-demand anchor. A trail that fails verification is not anchored: an
// anchor must never bless a tampered chain.
func anchorNow(ctx context.Context, e *env, cfg eventlog.Config, records, anchors, trust string) error {
	rep, err := readAndVerify(ctx, cfg, records, anchors, trust)
	if err != nil {
		return err
	}
	if !rep.OK() {
		printReport(e.out, rep)
		return fmt.Errorf("not anchored: the audit trail fails verification (%d problems)", len(rep.Problems))
	}
	var events []*eventsv1.Event
	for _, t := range rep.Trusts {
		if t.Head > 0 {
			events = append(events, audit.AnchorEvent(t.Trust, t.Head, t.HeadHash, "on-demand", anchorProducer, time.Now()))
		}
	}
	if len(events) == 0 {
		fmt.Fprintln(e.out, "nothing to anchor: no audit records yet")
		return nil
	}
	w := eventlog.NewWriter(cfg, "heraldctl", nil)
	defer w.Close()
	msgs := make([]kafka.Message, 0, len(events))
	for _, ev := range events {
		b, err := proto.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode anchor: %w", err)
		}
		msgs = append(msgs, kafka.Message{Topic: anchors, Key: []byte(ev.GetTenant()), Value: b})
	}
	wctx, cancel := timeout(ctx)
	defer cancel()
	if err := w.PutMany(wctx, msgs...); err != nil {
		return err
	}
	for _, ev := range events {
		a := ev.GetAuditAnchored()
		fmt.Fprintf(e.out, "anchored trust %s at sequence %d (%s)\n", a.GetTrust(), a.GetSequence(), shortHex(a.GetHeadHash()))
	}
	return nil
}

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

func actorOf(a *auditv1.AuditActor) *ExportActor {
	if a == nil {
		return nil
	}
	return &ExportActor{PersonID: a.GetPersonId(), Role: a.GetRole(), IdentityProvider: a.GetIdentityProvider(),
		Issuer: a.GetIssuer(), Subject: a.GetSubject(), ACR: a.GetAcr(), RelayingService: a.GetRelayingService()}
}

// exportAlert reads the alert's events from its partition of the log and
// the trail, and assembles the export.
func exportAlert(ctx context.Context, cfg eventlog.Config, records, anchors, alertID string) (*Export, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	events, forged, err := alertEvents(ctx, cfg, alertID)
	if err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("alert %s has no events on %s", alertID, cfg.EventsTopic)
	}
	tr, err := audit.ReadTrail(ctx, cfg, records, anchors)
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
			OccurredAt: r.GetOccurredAt().AsTime(), Actor: actorOf(r.GetActor()), PolicyVersion: r.GetPolicyVersion(), Detail: r.GetDetail(),
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
			Summary: Summary(ev), AuditSequence: bySeq[ev.GetEventId()], Where: le.where}
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
			xe.Actor = actorOf(r.GetActor())
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
		return n.GetNotificationId(), ExportDelivery{State: "sent", At: at, Recipient: n.GetRecipient().GetPersonId(), Channel: channel(n.GetChannel())}
	case *eventsv1.Event_NotificationFailed:
		n := p.NotificationFailed
		return n.GetNotificationId(), ExportDelivery{State: "failed", At: at, Recipient: n.GetRecipient().GetPersonId(), Channel: channel(n.GetChannel())}
	case *eventsv1.Event_NotificationDelivered:
		n := p.NotificationDelivered
		return n.GetNotificationId(), ExportDelivery{State: "delivered", At: at, Channel: channel(n.GetChannel())}
	}
	return "", ExportDelivery{}
}

type loggedEvent struct {
	ev    *eventsv1.Event
	where string
}

// alertEvents reads the alert's partition of the event log (key = alert id)
// and returns its events in log order, each once. With a key set
// (HERALD_CTL_EVENT_VERIFY_KEYS_FILE) an event of the alert not signed by
// a service that may produce it is left out and named in forged.
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
