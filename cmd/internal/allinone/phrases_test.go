package allinone

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/cmd/internal/runstate"
	"github.com/herald-health/herald/platform/mtls"
)

// startRun runs the all-in-one on free ports (with configure's changes
// to its configuration), waits up to within for its state file and returns
// it with the feed's output. The run stops when the test ends.
func startRun(t *testing.T, within time.Duration, configure func(*Config)) (runstate.State, *syncBuffer) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.AnyPorts = true
	cfg.DashboardAddr = "127.0.0.1:0"
	cfg.WorkDir = t.TempDir()
	configure(&cfg)
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if _, err := os.Stat(filepath.Join(cfg.WorkDir, runstate.FileName)); !os.IsNotExist(err) {
			t.Errorf("the state file outlived the run (stat: %v)", err)
		}
	})
	var st runstate.State
	deadline := time.Now().Add(within)
	for {
		s, ok, err := runstate.Read(filepath.Join(cfg.WorkDir, runstate.FileName))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			st = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no state file within %v; output:\n%s", within, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return st, out
}

// waitFeed waits until the feed has a line containing every part.
func waitFeed(t *testing.T, out *syncBuffer, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(out.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return line
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no feed line with %q within a minute; output:\n%s", parts, out.String())
	return ""
}

// The demo rules that look for trigger phrases fire under `make run`: a
// report flagged only by the words "tension pneumothorax" (no coded alert,
// no abnormal flag) is routed CRITICAL by always-alert-phrases, and one
// that reads "suspicious for malignancy" CANCER by suspected-cancer-phrases.
// They can only fire if the shipped tenants list the same phrases.
func TestDemoRulesFireOnTheShippedTriggerPhrases(t *testing.T) {
	st, out := startRun(t, time.Minute, func(c *Config) { c.Simulate = false })
	for _, tc := range []struct {
		tenant, msgID, text, category, rule string
	}{
		{"RZZ", "PHRASE-1", "Large right tension pneumothorax with mediastinal shift.", "critical", "always-alert-phrases"},
		{"RZZ", "PHRASE-2", "Spiculated lung mass, appearances suspicious for malignancy.", "cancer", "suspected-cancer-phrases"},
		{"RZZ", "PHRASE-3", "Intimal flap in keeping with aortic dissection.", "critical", "always-alert-phrases"},
	} {
		msg := strings.Join([]string{
			"MSH|^~\\&|CRIS|" + tc.tenant + "|CRITALERT|REGIONNET|" + time.Now().UTC().Format("20060102150405") + "||ORU^R01^ORU_R01|" + tc.msgID + "|P|2.4",
			"PID|1||9990000018^^^NHS^NH||SYNTHETIC^PATIENT||19700101|U",
			"PV1|1|O|OPD^^^" + tc.tenant,
			segment("ORC", map[int]string{1: "RE", 3: "ACC-" + tc.msgID + "^CRIS", 5: "CM", 12: "C1234567^REFERRER^SAM"}),
			segment("OBR", map[int]string{1: "1", 3: "ACC-" + tc.msgID + "^CRIS", 4: "XCHES^XR Chest^NICIP", 16: "C1234567^REFERRER^SAM",
				22: time.Now().UTC().Format("20060102150405"), 24: "CT", 25: "F"}),
			"OBX|1|TX|RPT^Report text^L|1|" + tc.text + "||||||F",
		}, "\r")
		ack, err := sendFrame(t, st, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ack, "MSA|AA|"+tc.msgID+"|alert ") || !strings.Contains(ack, " raised") {
			t.Fatalf("%s: ACK %q, want AA raised (not not_flagged: the phrase must be a trigger)", tc.msgID, ack)
		}
		waitFeed(t, out, "AlertRouted", tc.tenant, tc.category+",", "rule "+tc.rule)
	}
}

// sendFrame sends msg as one MLLP frame and returns the ACK, with its
// segments separated by newlines.
// sendFrame sends msg to the run's MLLP listener over mutual TLS, as the
// tool identity of the state file (make run's MLLP is TLS).
func sendFrame(t *testing.T, st runstate.State, msg string) (string, error) {
	t.Helper()
	id, err := mtls.Load(mtls.Files{CertFile: st.TLSCert, KeyFile: st.TLSKey, CAFile: st.TLSCA}, mtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := id.Dialer(nil, "")(ctx, "tcp", st.MLLP)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte("\x0b" + msg + "\x1c\r")); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes(0x0b); err != nil {
		return "", err
	}
	ack, err := r.ReadBytes(0x1c)
	if err != nil {
		return "", err
	}
	return strings.ReplaceAll(strings.TrimSuffix(string(ack), "\x1c"), "\r", "\n"), nil
}

// segment builds an HL7 segment from its fields by number.
func segment(id string, fields map[int]string) string {
	n := 0
	for i := range fields {
		n = max(n, i)
	}
	parts := make([]string, n+1)
	parts[0] = id
	for i, v := range fields {
		parts[i] = v
	}
	return strings.Join(parts, "|")
}
