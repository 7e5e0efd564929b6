package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-health/herald/cmd/internal/allinone"
	"github.com/herald-health/herald/cmd/internal/ctl"
	"github.com/herald-health/herald/cmd/internal/runstate"
)

// lockedBuffer is an output both a running command and the test read.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func heraldctl(args ...string) (code int, out, errOut string) {
	var o, e bytes.Buffer
	code = ctl.Main(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

// startMakeRun runs what `make run` runs (on free ports, no simulator) and
// points heraldctl at its state file, as a newcomer's second terminal is.
func startMakeRun(t *testing.T) runstate.State {
	t.Helper()
	cfg := allinone.DefaultConfig()
	cfg.AnyPorts = true
	cfg.DashboardAddr = "127.0.0.1:0"
	cfg.WorkDir = t.TempDir()
	cfg.Simulate = false
	cfg.Feed = false
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- allinone.Run(ctx, cfg, &lockedBuffer{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("make run: %v", err)
		}
	})
	path := filepath.Join(cfg.WorkDir, runstate.FileName)
	t.Setenv("HERALD_CTL_STATE", path)
	t.Setenv("HERALD_CTL_TOKEN_FILE", filepath.Join(t.TempDir(), "token.json"))
	for _, v := range []string{"INTAKE", "FHIR", "MLLP", "RULES", "NOTIFICATION", "ACK", "KAFKA", "REDIS", "ISSUER", "TOKEN"} {
		t.Setenv("HERALD_CTL_"+v, "")
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if st, ok, err := runstate.Read(path); err == nil && ok {
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("make run wrote no state file within a minute")
	return runstate.State{}
}

var alertIDRE = regexp.MustCompile(`alert ([0-9a-f]{32}) raised`)

// A newcomer following the README under `make run`: heraldctl finds the
// run's services, broker and Redis without flags (tail and rebuild used to
// look at 9092 and 6379 and hang or fail); `raise` with no arguments prints
// its usage instead of raising an alert; `ack` takes its flags before or
// after the alert id, as the README writes it.
func TestHeraldctlFollowsTheREADMEUnderMakeRun(t *testing.T) {
	startMakeRun(t)

	// raise with no arguments: usage, exit 2, and no alert.
	code, _, errOut := heraldctl("raise")
	if code != 2 || !strings.Contains(errOut, "heraldctl raise -hl7") {
		t.Fatalf("raise without arguments: got exit %d, %q; want 2 and the usage", code, errOut)
	}
	if code, out, errOut := heraldctl("list"); code != 0 || !strings.Contains(out, "(no alerts match)") {
		t.Fatalf("list after a bare raise: exit %d %q %q; want no alert", code, out, errOut)
	}

	code, out, errOut := heraldctl("raise", "-hl7", "../../../services/intake/testdata/oru_r01_critical_pneumothorax.hl7")
	if code != 0 || !strings.Contains(out, "MSA|AA") {
		t.Fatalf("raise -hl7: exit %d %q %q", code, out, errOut)
	}
	m := alertIDRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("raise -hl7 printed no alert id: %q", out)
	}
	id := m[1]

	// tail follows the run's embedded broker (from the beginning: a new
	// consumer joins a moment after it starts).
	tailOut := &lockedBuffer{}
	tailCtx, stopTail := context.WithCancel(context.Background())
	tailDone := make(chan int, 1)
	go func() {
		tailDone <- ctl.Main(tailCtx, []string{"tail", "-from-beginning", "-alert", id}, tailOut, tailOut)
	}()
	defer func() { stopTail(); <-tailDone }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(tailOut.String(), "AlertRouted") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := tailOut.String(); !strings.Contains(got, "AlertRaised") || !strings.Contains(got, id) {
		t.Fatalf("tail showed no AlertRaised of %s within 30s:\n%s", id, got)
	}

	// -as is gone, and not signed in, heraldctl calls with its development
	// certificate alone, which raises and reads but acts for nobody: the
	// acknowledgement is refused, naming the roles it needs.
	if code, _, errOut := heraldctl("ack", id, "-as", "rzz-dr-chen"); code != 1 || !strings.Contains(errOut, "-as is refused") {
		t.Fatalf("ack -as: exit %d %q", code, errOut)
	}
	if code, out, errOut := heraldctl("ack", id); code != 1 || !strings.Contains(errOut, "clinician") || strings.Contains(out, "acknowledged") {
		t.Fatalf("ack without signing in: exit %d %q %q; want a refusal naming the roles", code, out, errOut)
	}

	// heraldctl login through make run's development provider: the browser
	// is played by an HTTP client (the provider signs in the login hint).
	// The trust's fail-safe officer: authorization lets a clinician act only
	// on alerts sent to them, and the demo clinicians are on rotas.
	signIn(t, "rzz-fso-patel")

	// ack, written as in the README: the id, then the flags.
	code, out, errOut = heraldctl("ack", id, "-request-id", "readme-ack")
	if code != 0 || !strings.Contains(out, "acknowledged") {
		t.Fatalf("ack ID: exit %d %q %q", code, out, errOut)
	}
	// And flags first, as Go's flag package wants them.
	if code, out, errOut := heraldctl("action", "-what", "chest drain inserted", id); code != 0 || !strings.Contains(out, "actioned") {
		t.Fatalf("action -what Y ID: exit %d %q %q", code, out, errOut)
	}

	// bundle propose reaches rules, which takes a policy change only from a
	// verified person holding a policy role for the trust (heraldctl login
	// signed in a fail-safe officer).
	code, _, errOut = heraldctl("bundle", "propose", "../../../services/rules/bundles/demo/RZY")
	if code != 1 || !strings.Contains(errOut, "policy-admin") || !strings.Contains(errOut, "safety-lead") {
		t.Fatalf("bundle propose by a fail-safe officer: exit %d %q; want a refusal naming the roles", code, errOut)
	}

	// The audit trail, as the README's Operations shows it: the ack and the
	// action are chained (a moment after they are in the log), verified,
	// anchored on demand and exported.
	var x ctl.Export
	deadline = time.Now().Add(60 * time.Second)
	for len(x.Proof.Records) < 2 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		if code, out, _ := heraldctl("audit", "export", id); code == 0 {
			x = ctl.Export{}
			_ = json.Unmarshal([]byte(out), &x)
		}
	}
	if len(x.Proof.Records) < 2 || !x.Proof.Verified {
		t.Fatalf("audit export %s: got %d chained records (verified %v) within 60s, want the ack and the action", id, len(x.Proof.Records), x.Proof.Verified)
	}
	if code, out, errOut := heraldctl("audit", "anchor"); code != 0 || !strings.Contains(out, "anchored trust") {
		t.Fatalf("audit anchor: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := heraldctl("audit", "verify"); code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("audit verify: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := heraldctl("audit", "export", "-format", "html", id); code != 0 || !strings.Contains(out, "chain proof") && !strings.Contains(out, "Chain proof") {
		t.Fatalf("audit export -format html: exit %d %q", code, errOut)
	}

	// rebuild finds the run's Redis.
	code, out, errOut = heraldctl("rebuild", "acknowledgement")
	if code != 0 || !strings.Contains(out, "will rebuild") {
		t.Fatalf("rebuild acknowledgement: exit %d %q %q", code, out, errOut)
	}
}

// signIn runs heraldctl login as person, opening the address it prints
// as a browser would. A sign-in the loaded provider spoiled (Hydra has
// been seen to take a flow's consent verifier as used, or to drop a
// request it took more than 10 s to answer) is started again, up to three
// times.
func signIn(t *testing.T, person string) {
	t.Helper()
	var last string
	for range 3 {
		if last = loginOnce(t, person); last == "" {
			return
		}
		t.Logf("heraldctl login as %s failed, starting again: %s", person, last)
	}
	t.Fatalf("heraldctl login as %s: %s", person, last)
}

// loginOnce is one heraldctl login; it returns why it failed, or "".
func loginOnce(t *testing.T, person string) string {
	t.Helper()
	out := &lockedBuffer{}
	done := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- ctl.Main(ctx, []string{"login", "-login-hint", person, "-acr", "AAL3_ANY"}, out, out)
	}()
	var authURL string
	deadline := time.Now().Add(60 * time.Second)
	for authURL == "" && time.Now().Before(deadline) {
		if m := regexp.MustCompile(`(?m)^  (http\S+)$`).FindStringSubmatch(out.String()); m != nil {
			authURL = m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	if authURL == "" {
		t.Fatalf("heraldctl login printed no address: %q", out.String())
	}
	jar, _ := cookiejar.New(nil)
	resp, err := (&http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: singleUse()}).Get(authURL)
	if err != nil {
		cancel() // the sign-in will not come back
		<-done
		return err.Error()
	}
	_ = resp.Body.Close()
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(out.String(), "signed in") {
			return fmt.Sprintf("exit %d %q", code, out.String())
		}
		return ""
	case <-time.After(90 * time.Second):
		t.Fatalf("heraldctl login did not finish: %q", out.String())
	}
	return "unreachable"
}

// singleUse is the browser's transport: without keep-alive, Go's transport
// never re-sends a GET on a connection that broke under load, which the
// provider refuses ("the consent verifier has already been used").
func singleUse() http.RoundTripper { return &http.Transport{DisableKeepAlives: true} }

// With no run (no state file), tail says what is wrong instead of waiting
// for a broker that is not there.
func TestTailWithoutARunSaysSo(t *testing.T) {
	t.Setenv("HERALD_CTL_STATE", filepath.Join(t.TempDir(), "none.json"))
	t.Setenv("HERALD_CTL_KAFKA", "127.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	code := ctl.Main(ctx, []string{"tail"}, &o, &e)
	if code != 1 || !strings.Contains(e.String(), "not reachable") || ctx.Err() != nil {
		t.Fatalf("got exit %d %q (context %v); want a prompt explanation", code, e.String(), ctx.Err())
	}
}
