package eventlog

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Failover: a member of a consumer group killed with SIGKILL (it never
// leaves the group) holds its partitions until the broker's session
// timeout; then the survivors take them over. The member runs in a child
// process (this test binary again, TestFailoverChild), so that the kill is
// a real SIGKILL: no LeaveGroup, no closed connections but the kernel's.

const (
	envChildBrokers = "HERALD_FAILOVER_CHILD_BROKERS"
	envChildTopic   = "HERALD_FAILOVER_CHILD_TOPIC"
	envChildDLQ     = "HERALD_FAILOVER_CHILD_DLQ"
	envChildGroup   = "HERALD_FAILOVER_CHILD_GROUP"
	envChildSession = "HERALD_FAILOVER_CHILD_SESSION"
)

// TestFailoverChild is the killed member: it consumes the group and prints
// "handled <event id>" per record until it is killed. It runs only as the
// child of failover.
func TestFailoverChild(t *testing.T) {
	if os.Getenv(envChildGroup) == "" {
		t.Skip("the child process of TestASIGKILLedMembersPartitionsMoveToTheSurvivor")
	}
	cfg := DefaultConfig()
	cfg.Brokers = strings.Split(os.Getenv(envChildBrokers), ",")
	cfg.EventsTopic, cfg.DLQTopic = os.Getenv(envChildTopic), os.Getenv(envChildDLQ)
	session, err := time.ParseDuration(os.Getenv(envChildSession))
	if err != nil {
		t.Fatal(err)
	}
	cfg.SessionTimeout = session
	var mu sync.Mutex
	_ = Consume(context.Background(), ConsumerConfig{Config: cfg, GroupID: os.Getenv(envChildGroup), Logger: logging.Discard()},
		func(_ context.Context, d Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			fmt.Printf("handled %s\n", d.Event.GetEventId())
			return nil
		})
}

// handledSet is a set of event ids handled by one member.
type handledSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (h *handledSet) add(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ids == nil {
		h.ids = map[string]bool{}
	}
	h.ids[id] = true
}

func (h *handledSet) all(ids []string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		if !h.ids[id] {
			return false
		}
	}
	return true
}

func (h *handledSet) any(ids []string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		if h.ids[id] {
			return true
		}
	}
	return false
}

// batchOnEveryPartition appends one event to each of the topic's
// partitions (keys chosen by the producer's hash) and returns their ids.
func batchOnEveryPartition(tb testing.TB, w *Writer, partitions int, name string) []string {
	tb.Helper()
	parts := make([]int, partitions)
	for i := range parts {
		parts[i] = i
	}
	var events []*eventsv1.Event
	var ids []string
	seen := map[int]bool{}
	for i := 0; len(seen) < partitions; i++ {
		key := fmt.Sprintf("%s-%d", name, i)
		p := (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(key)}, parts...)
		if seen[p] {
			continue
		}
		seen[p] = true
		ev := raisedEvent(key)
		events = append(events, ev)
		ids = append(ids, ev.GetEventId())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for range 40 { // a fresh topic's leaders take a moment
		if err = w.Append(ctx, events...); err == nil {
			return ids
		}
		time.Sleep(250 * time.Millisecond)
	}
	tb.Fatal(err)
	return nil
}

// waitFor polls cond every 100 ms until it holds or within passes.
func waitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("waited %v: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// failover runs a group of two members, the child process and one in this
// process, SIGKILLs the child once both hold partitions, appends a record
// to every partition, and returns how long after the kill the survivor had
// handled all of them (the partitions the child held included).
func failover(tb testing.TB, partitions int, session time.Duration) time.Duration {
	tb.Helper()
	cfg := FreshTopics(tb, partitions)
	cfg.SessionTimeout = session
	group := fmt.Sprintf("failover-%d", time.Now().UnixNano())
	w := NewWriter(cfg, "test", telemetry.Nop("test"))
	defer w.Close()

	child := exec.Command(os.Args[0], "-test.run=^TestFailoverChild$", "-test.count=1")
	child.Env = append(os.Environ(), envChildBrokers+"="+strings.Join(cfg.Brokers, ","), envChildTopic+"="+cfg.EventsTopic,
		envChildDLQ+"="+cfg.DLQTopic, envChildGroup+"="+group, envChildSession+"="+session.String())
	out, err := child.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := child.Start(); err != nil {
		tb.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = child.Process.Kill()
		}
		_ = child.Wait()
	}()
	var byChild, bySurvivor handledSet
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "handled "); ok {
				byChild.add(id)
			}
		}
	}()
	first := batchOnEveryPartition(tb, w, partitions, "first")
	waitFor(tb, 90*time.Second, "the child never handled the first records", func() bool { return byChild.all(first) })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Consume(ctx, ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard()}, func(_ context.Context, d Delivery) error {
			bySurvivor.add(d.Event.GetEventId())
			return nil
		})
	}()
	defer func() { cancel(); <-done }()
	// Both members hold partitions once each handles a record of one batch.
	for round := 0; ; round++ {
		ids := batchOnEveryPartition(tb, w, partitions, "split-"+strconv.Itoa(round))
		waitFor(tb, 90*time.Second, "the group never handled a batch", func() bool {
			for _, id := range ids {
				if !byChild.any([]string{id}) && !bySurvivor.any([]string{id}) {
					return false
				}
			}
			return true
		})
		if byChild.any(ids) && bySurvivor.any(ids) {
			break
		}
		if round > 100 {
			tb.Fatal("the two members never shared the partitions")
		}
	}

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	killed = true
	start := time.Now()
	after := batchOnEveryPartition(tb, w, partitions, "after-kill")
	waitFor(tb, 120*time.Second, "the survivor never took over the killed member's partitions", func() bool { return bySurvivor.all(after) })
	return time.Since(start)
}

// TestASIGKILLedMembersPartitionsMoveToTheSurvivor kills a member of a
// two-member group with SIGKILL: every record appended after the kill, on
// every partition (the killed member's included), is handled by the
// survivor. How long that took is logged, not asserted (see
// BenchmarkFailoverAfterSIGKILL and docs/performance.md for the figure).
func TestASIGKILLedMembersPartitionsMoveToTheSurvivor(t *testing.T) {
	took := failover(t, 4, DefaultSessionTimeout)
	t.Logf("the survivor handled every partition's record %v after the SIGKILL (session timeout %v, heartbeat %v)",
		took.Round(time.Millisecond), DefaultSessionTimeout, HeartbeatInterval(DefaultSessionTimeout))
}

// BenchmarkFailoverAfterSIGKILL reports failover-s: the time from the
// SIGKILL of a member of a two-member group (twelve partitions) to the
// survivor having handled a record appended then on every partition, with
// the default session timeout (6 s, heartbeat 600 ms) and with the former
// one (10 s, heartbeat 1 s). Run it with a few iterations (each takes the
// session timeout and more): -benchtime=3x.
func BenchmarkFailoverAfterSIGKILL(b *testing.B) {
	for _, session := range []time.Duration{DefaultSessionTimeout, 10 * time.Second} {
		b.Run("session="+session.String(), func(b *testing.B) {
			var total, worst time.Duration
			for range b.N {
				took := failover(b, 12, session)
				total += took
				worst = max(worst, took)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "failover-s")
			b.ReportMetric(worst.Seconds(), "worst-failover-s")
		})
	}
}
