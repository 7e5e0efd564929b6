package allinone

import (
	"fmt"
	"io"
	"time"

	"github.com/herald-health/herald/platform/mtls"
)

type banner struct {
	infra, dashboard, bundles, logs  string
	state                            string
	intake, rules, ack, notification map[string]string
	speedup                          int
	simulate                         bool
	took                             time.Duration
	// scheme is https unless the run is plaintext; security says how the
	// hops are protected (the development profile, in so many words).
	scheme, security string
	tool             mtls.Files
	// reporting says where the console's reporting store is, or why it is off.
	reporting string
	// noSignIn: the run has no identity provider (-idp=false) while
	// authorization is on, so nobody can act as a person.
	noSignIn bool
}

// noSignInNote says what a run without the identity provider cannot do.
const noSignInNote = `
Without the development identity provider (-idp=false) nobody can sign in,
so nothing here can act as a person:
  - there is no console, and heraldctl login has no provider;
  - heraldctl ack, decline, close and policy changes are refused (heraldctl's
    certificate raises alerts and reads, nothing more);
  - the simulated clinicians never decline (a decline is a person's command);
    they acknowledge by their links instead (the development acknowledge
    page takes the link's recipient as the person).
Run make run without -idp=false to sign in and act.
`

func printBanner(w io.Writer, b banner) {
	fmt.Fprintf(w, `
Herald is running (started in %.1fs) on %s.

  Open %[3]s: the console. Sign in as a demo person (clinician, fail-safe
  officer, safety lead, or a clinician of the other trust) to work the
  worklist, the alert pages and the fail-safe queue. Every message the
  notification service sent (captured, not delivered) is on %[3]s/dev/messages.

  security          %s

  intake            gRPC %s   FHIR %s://%s/fhir/{ODS}   HL7 v2 MLLP %s
  rules             gRPC %s
  acknowledgement   gRPC %s   acknowledge links http://%s/ack/...
  notification      gRPC %s   delivery receipts http://%s
  policies          %s (demo trusts RZZ and RZY, %dx faster; edit them and they reload)
  service logs      %s (JSON)
  run state         %s (how heraldctl finds this run)
  reporting store   %s

Try, in another terminal:
  go run ./cmd/heraldctl list
  go run ./cmd/heraldctl tail
  go run ./cmd/heraldctl raise -hl7 services/intake/testdata/oru_r01_critical_pneumothorax.hl7
  go run ./cmd/heraldctl policy evaluate -tenant RZZ -category critical
  go run ./cmd/heraldctl login       # sign in as a demo person (the development identity provider), then ack, close...
  %s
`, b.took.Seconds(), b.infra, b.dashboard, b.security,
		b.intake["grpc"], b.scheme, b.intake["fhir"], b.intake["mllp"], b.rules["grpc"], b.ack["grpc"], b.ack["http"],
		b.notification["grpc"], b.notification["receipts"], b.bundles, b.speedup, b.logs, b.state, b.reporting, grpcurl(b))
	if b.noSignIn {
		fmt.Fprint(w, noSignInNote)
	}
	if b.simulate {
		fmt.Fprintln(w, "\nThe simulator raises a synthetic alert every few seconds; the event log follows, one line per event:")
	}
	fmt.Fprintln(w)
}

// grpcurl is the example grpcurl command line (the services serve
// reflection in the development profile).
func grpcurl(b banner) string {
	if b.tool.CertFile == "" {
		return "grpcurl -plaintext " + b.ack["grpc"] + " list"
	}
	return fmt.Sprintf("grpcurl -cacert %s -cert %s -key %s %s list", b.tool.CAFile, b.tool.CertFile, b.tool.KeyFile, b.ack["grpc"])
}
