package eventlog_test

import (
	"context"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
)

// Wait returns only once the record that was last in the key's partition
// when Wait was called has been handled: by this process's consumer (told
// through ConsumerConfig.Freshness) or, for a barrier of another process,
// by the group's committed offsets.
func TestFreshnessWaitsUntilTheLogAsOfTheCallIsHandled(t *testing.T) {
	cfg := testConfig(t, 3)
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	ctx := context.Background()
	if err := w.Append(ctx, raised("alert-f", 0), raised("alert-f", 1)); err != nil {
		t.Fatal(err)
	}
	group := testinfra.UniqueName("group")
	local := eventlog.NewFreshness(cfg, group, "")
	defer local.Close()
	remote := eventlog.NewFreshness(cfg, group, "") // knows only the committed offsets
	defer remote.Close()
	release := make(chan struct{})
	var handled atomic.Int32
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- eventlog.Consume(runCtx, eventlog.ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard(), Freshness: local},
			func(_ context.Context, d eventlog.Delivery) error {
				if d.Event.GetEventId() == raised("alert-f", 1).GetEventId() {
					<-release
				}
				handled.Add(1)
				return nil
			})
	}()
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer func() {
		unblock() // a failed assertion must not leave the handler blocked
		cancel()
		<-done
	}()
	// The barriers are asked once the consumer has joined its group and
	// handled the first record (on a fresh broker the group's coordinator
	// and the topic's metadata take a while to appear); the second record,
	// the partition's last, is still in hand.
	for end := time.Now().Add(30 * time.Second); handled.Load() < 1 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if handled.Load() < 1 {
		t.Fatal("the consumer handled nothing in 30 s")
	}
	results := make(chan string, 2)
	for name, f := range map[string]*eventlog.Freshness{"local": local, "remote": remote} {
		go func() {
			wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
			defer wcancel()
			if _, err := f.Wait(wctx, "alert-f"); err != nil {
				results <- name + ": " + err.Error()
				return
			}
			results <- name
		}()
	}
	select {
	case r := <-results:
		t.Fatalf("Wait returned (%s) while the partition's last record was not handled", r)
	case <-time.After(300 * time.Millisecond): // several commit intervals
	}
	unblock()
	got := map[string]bool{}
	for range 2 {
		select {
		case r := <-results:
			got[r] = true
		case <-time.After(60 * time.Second):
			t.Fatalf("Wait did not return after the record was handled; got %v", got)
		}
	}
	if !got["local"] || !got["remote"] {
		t.Fatalf("got %v, want both barriers passed", got)
	}
	if n := handled.Load(); n != 2 {
		t.Fatalf("handled %d records, want 2", n)
	}
}

// With lanes, a key's barrier waits only for that key's records: an alert
// whose events are all handled is fresh while another alert's earlier
// record on the same partition is still in hand (on another lane).
func TestFreshnessWaitsOnlyForTheKeysOwnRecords(t *testing.T) {
	cfg := testConfig(t, 1)
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()
	ctx := context.Background()
	stuck, free := "alert-s", "alert-t"
	for lane(stuck, 4) == lane(free, 4) {
		free += "x"
	}
	if err := w.Append(ctx, raised(stuck, 0), raised(free, 0)); err != nil {
		t.Fatal(err)
	}
	group := testinfra.UniqueName("group")
	f := eventlog.NewFreshness(cfg, group, "")
	defer f.Close()
	release := make(chan struct{})
	var handledFree atomic.Bool
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- eventlog.Consume(runCtx, eventlog.ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard(), Freshness: f, Lanes: 4},
			func(_ context.Context, d eventlog.Delivery) error {
				if d.Event.GetAlertId() == stuck {
					<-release
				}
				if d.Event.GetAlertId() == free {
					handledFree.Store(true)
				}
				return nil
			})
	}()
	defer func() {
		close(release)
		cancel()
		<-done
	}()
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if _, err := f.Wait(wctx, free); err != nil {
		t.Fatalf("Wait(%s) = %v while only %s's record is in hand", free, err, stuck)
	}
	if !handledFree.Load() {
		t.Fatalf("Wait(%s) returned before its record was handled", free)
	}
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	if _, err := f.Wait(sctx, stuck); err == nil {
		t.Fatalf("Wait(%s) returned while its record is in hand", stuck)
	}
}

// lane is the consumer's lane of a key (fnv-1a modulo the lanes).
func lane(key string, n int) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return h.Sum32() % uint32(n)
}
