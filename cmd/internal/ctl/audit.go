package ctl

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
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
		x, err := audit.ExportAlert(ctx, cfg, *recordsTopic, *anchorsTopic, id)
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
			return audit.RenderExportHTML(w, x)
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

// Export is the evidential record of one alert (audit.Export).
type Export = audit.Export
