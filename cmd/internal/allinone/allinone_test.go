package allinone

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-health/herald/cmd/internal/runstate"
)

// syncBuffer is a bytes.Buffer safe for the feed and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// What a newcomer sees after `make run`: within the first minute, alerts
// arrive, are routed and notified, and some are acknowledged; the feed
// never shows patient data.
func TestMakeRunShowsAlertsFlowWithinAMinute(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AnyPorts = true
	cfg.DashboardAddr = "127.0.0.1:0"
	cfg.WorkDir = t.TempDir()
	cfg.Every = 500 * time.Millisecond
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, &out) }()

	deadline := time.Now().Add(60 * time.Second)
	want := []string{"Herald is running", "AlertRaised", "AlertRouted", "NotificationSent", "AlertAcknowledged"}
	for time.Now().Before(deadline) {
		missing := false
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				missing = true
			}
		}
		if !missing {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The page make run opens is the console: its sign-in offers the demo
	// people, and the captured messages have a page of their own.
	st, ok, err := runstate.Read(filepath.Join(cfg.WorkDir, runstate.FileName))
	if err != nil || !ok {
		t.Fatalf("run state: %v (found %v)", err, ok)
	}
	for path, want := range map[string]string{"/": "Sign in to Herald", "/dev/messages": "<html"} {
		resp, err := http.Get(st.Dashboard + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("GET %s%s: %d, want 200 with %q", st.Dashboard, path, resp.StatusCode, want)
		}
		if path == "/" && !strings.Contains(string(b), "login_hint=rzz-dr-ashworth") {
			t.Errorf("the console's sign-in page offers no demo clinician")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := out.String()
	for _, w := range want {
		if !strings.Contains(got, w) {
			logs, _ := os.ReadFile(filepath.Join(cfg.WorkDir, "services.log"))
			t.Fatalf("output lacks %q within a minute; got:\n%s\nservice logs (last 4 kB):\n%s", w, got, tail(logs, 4096))
		}
	}
	// Every service signs what it appends with its throwaway key and every
	// reader verifies: nothing of the demo's own is refused.
	if logs, _ := os.ReadFile(filepath.Join(cfg.WorkDir, "services.log")); strings.Contains(string(logs), "record refused") {
		t.Errorf("a record of the demo was refused for its signature:\n%s", tail(logs, 4096))
	}
	for _, phi := range []string{"SYNTHETIC", "1970-01-01", "Synthetic report", "999000"} {
		if strings.Contains(got, phi) {
			t.Errorf("output contains patient data %q", phi)
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
