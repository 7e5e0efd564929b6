package allinone

import (
	"fmt"
	"io"
	"time"
)

type banner struct {
	infra, dashboard, bundles, logs  string
	state                            string
	intake, rules, ack, notification map[string]string
	speedup                          int
	simulate                         bool
	took                             time.Duration
}

func printBanner(w io.Writer, b banner) {
	fmt.Fprintf(w, `
Herald is running (started in %.1fs) on %s.

  Open %s to watch alerts arrive, escalate and get acknowledged,
  with every message the notification service sent (captured, not delivered).

  intake            gRPC %s   FHIR http://%s/fhir/{ODS}   HL7 v2 MLLP %s
  rules             gRPC %s
  acknowledgement   gRPC %s   acknowledge links http://%s/ack/...
  notification      gRPC %s   delivery receipts http://%s
  policies          %s (demo trusts RZZ and RZY, %dx faster; edit them and they reload)
  service logs      %s (JSON)
  run state         %s (how heraldctl finds this run)

Try, in another terminal:
  go run ./cmd/heraldctl list
  go run ./cmd/heraldctl tail
  go run ./cmd/heraldctl raise -hl7 services/intake/testdata/oru_r01_critical_pneumothorax.hl7
  go run ./cmd/heraldctl policy evaluate -tenant RZZ -category critical
  grpcurl -plaintext %s list
`, b.took.Seconds(), b.infra, b.dashboard,
		b.intake["grpc"], b.intake["fhir"], b.intake["mllp"], b.rules["grpc"], b.ack["grpc"], b.ack["http"],
		b.notification["grpc"], b.notification["receipts"], b.bundles, b.speedup, b.logs, b.state, b.ack["grpc"])
	if b.simulate {
		fmt.Fprintln(w, "\nThe simulator raises a synthetic alert every few seconds; the event log follows, one line per event:")
	}
	fmt.Fprintln(w)
}
