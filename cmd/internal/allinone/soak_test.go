package allinone

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// linesSeen keeps, per alert, the event types the feed printed and when
// the test first saw the alert routed.
type linesSeen struct {
	mu     sync.Mutex
	partly string
	types  map[string]map[string]int
	routed map[string]time.Time
}

func (l *linesSeen) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	text := l.partly + string(p)
	lines := strings.Split(text, "\n")
	l.partly = lines[len(lines)-1]
	for _, line := range lines[:len(lines)-1] {
		f := strings.Fields(line)
		if len(f) < 3 || len(f[2]) != 32 {
			continue
		}
		typ, id := f[1], f[2]
		if l.types[id] == nil {
			l.types[id] = map[string]int{}
		}
		l.types[id][typ]++
		if typ == "AlertRouted" {
			if _, ok := l.routed[id]; !ok {
				l.routed[id] = time.Now()
			}
		}
	}
	return len(p), nil
}

// The demo tells someone of every alert: run for HERALD_DEMO_SOAK (e.g.
// 4m; skipped when unset, so not part of make test) with alerts every
// second, and require that every alert routed before the last 30 s got a
// message (NotificationSent, DigestSent) or has an event saying why not
// (NotificationFailed, AlertCancelled). Before the rate limit ran on the
// demo's clock and merged held-back messages into digests, about a fifth of
// the non-CRITICAL alerts got nothing after three minutes.
func TestDemoTellsSomeoneOfEveryAlert(t *testing.T) {
	soak, err := time.ParseDuration(os.Getenv("HERALD_DEMO_SOAK"))
	if err != nil || soak <= 0 {
		t.Skip("set HERALD_DEMO_SOAK (e.g. 4m) to run the demo that long")
	}
	cfg := DefaultConfig()
	cfg.AnyPorts = true
	cfg.DashboardAddr = "127.0.0.1:0"
	cfg.WorkDir = t.TempDir()
	cfg.Every = time.Second
	seen := &linesSeen{types: map[string]map[string]int{}, routed: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, seen) }()
	time.Sleep(soak)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	cutoff := time.Now().Add(-30 * time.Second)
	seen.mu.Lock()
	defer seen.mu.Unlock()
	var routed, told, digested, deferred, failedOnly, cancelled, silent, breachNotices int
	for id, at := range seen.routed {
		ty := seen.types[id]
		breachNotices += ty["BreachNoticeSent"]
		if at.After(cutoff) {
			continue
		}
		routed++
		deferred += min(ty["NotificationDeferred"], 1)
		switch {
		case ty["NotificationSent"] > 0 || ty["DigestSent"] > 0:
			told++
			if ty["DigestSent"] > 0 {
				digested++
			}
		case ty["NotificationFailed"] > 0:
			failedOnly++
		case ty["AlertCancelled"] > 0:
			cancelled++
		default:
			silent++
			t.Errorf("alert %s was routed and nobody was told, with no event saying why: %v", id, ty)
		}
	}
	t.Logf("demo for %s: %d alerts routed (before the last 30 s); %d got a message (%d with a deferred message, %d in a digest), "+
		"%d only failed sends (on the timeline), %d cancelled first, %d silent; %d breach notices",
		soak, routed, told, deferred, digested, failedOnly, cancelled, silent, breachNotices)
	if routed == 0 {
		t.Fatal("no alert was routed")
	}
}
