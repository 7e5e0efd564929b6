package eventlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/testinfra"
)

// applied is an idempotent store of the test's handlers: how often each
// alert id was applied.
type applied struct {
	mu   sync.Mutex
	n    map[string]int
	runs []int // sizes of the runs the BatchHandler got
}

func (a *applied) apply(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n[id]++
}

func (a *applied) distinct() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.n)
}

func (a *applied) run(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.runs = append(a.runs, n)
}

func committedOffset(t *testing.T, cfg Config, group string) int64 {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: &kafka.Transport{}}
	res, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{cfg.EventsTopic: {0}}})
	if err != nil || res.Error != nil {
		t.Fatalf("committed offsets: %v %v", err, res.Error)
	}
	return res.Topics[cfg.EventsTopic][0].CommittedOffset
}

// A consumer dies in the middle of a run (after applying part of it) and
// its replacement gets the whole run again: every record ends up applied,
// and nothing of the cut-short run was committed before it died.
func TestBatchHandlerDiesMidRunAndTheRunIsRedeliveredAndConverges(t *testing.T) {
	cfg := FreshTopics(t, 1)
	const total = 300
	ids := make([]string, total)
	for i := range ids {
		ids[i] = fmt.Sprintf("alert-%03d", i)
	}
	appendRaised(t, cfg, ids...)
	group := testinfra.UniqueName("group")
	store := &applied{n: map[string]int{}}
	single := func(_ context.Context, d Delivery) error {
		store.apply(d.Event.GetAlertId())
		return nil
	}

	// The first consumer applies records until it meets a run of several,
	// applies half of that run and dies there (its context ends; like a
	// killed process, the handler never returns on its own).
	ctx, die := context.WithCancel(context.Background())
	var runStart int64 = -1
	done := make(chan error, 1)
	go func() {
		done <- Consume(ctx, ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard(),
			Batch: func(hctx context.Context, run []Delivery) error {
				store.run(len(run))
				runStart = run[0].Offset
				for _, d := range run[:len(run)/2] {
					store.apply(d.Event.GetAlertId())
				}
				die()
				<-hctx.Done()
				return hctx.Err()
			}}, single)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(90 * time.Second):
		die()
		<-done
		t.Fatal("the consumer never got a run of several records")
	}
	if runStart < 0 {
		t.Fatal("the consumer stopped without a run")
	}
	// Durable before acknowledged: the committed offset does not pass the
	// first record of the run cut short, and every record before it was
	// applied.
	off := committedOffset(t, cfg, group)
	if off > runStart {
		t.Fatalf("committed offset %d passes the run cut short at offset %d", off, runStart)
	}
	store.mu.Lock()
	for _, id := range ids[:max(off, 0)] {
		if store.n[id] == 0 {
			t.Fatalf("%s committed (offset %d) but never applied", id, off)
		}
	}
	store.mu.Unlock()

	// The replacement, in the same group, handles the rest in runs.
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() {
		done2 <- Consume(ctx2, ConsumerConfig{Config: cfg, GroupID: group, Logger: logging.Discard(),
			Batch: func(_ context.Context, run []Delivery) error {
				store.run(len(run))
				for _, d := range run {
					store.apply(d.Event.GetAlertId())
				}
				return nil
			}}, single)
	}()
	deadline := time.Now().Add(90 * time.Second)
	for store.distinct() < total && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel2()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	for _, id := range ids {
		if store.n[id] == 0 {
			t.Fatalf("%s was never applied (%d of %d were)", id, len(store.n), total)
		}
	}
	several := 0
	for _, n := range store.runs {
		if n > 1 {
			several++
		}
	}
	if several == 0 {
		t.Fatalf("no run of several records reached the BatchHandler: %v", store.runs)
	}
}

// A run that fails as a whole is handled one record at a time with the
// usual policy: the bad record is dead-lettered alone and every other is
// applied, in order per key.
func TestAFailedRunIsHandledOneByOneAndOnlyTheBadRecordIsDeadLettered(t *testing.T) {
	cfg := FreshTopics(t, 1)
	var ids []string
	for i := range 40 {
		ids = append(ids, fmt.Sprintf("ok-%02d", i))
		if i == 20 {
			ids = append(ids, "poison")
		}
	}
	appendRaised(t, cfg, ids...)
	store := &applied{n: map[string]int{}}
	var mu sync.Mutex
	var order []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Consume(ctx, ConsumerConfig{Config: cfg, GroupID: testinfra.UniqueName("group"), Logger: logging.Discard(),
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			Batch: func(_ context.Context, run []Delivery) error {
				store.run(len(run))
				for _, d := range run {
					if d.Event.GetAlertId() == "poison" {
						return errors.New("a record of the run is bad")
					}
				}
				for _, d := range run {
					store.apply(d.Event.GetAlertId())
					mu.Lock()
					order = append(order, d.Event.GetAlertId())
					mu.Unlock()
				}
				return nil
			}},
			func(_ context.Context, d Delivery) error {
				if d.Event.GetAlertId() == "poison" {
					return Permanent(errors.New("poison record"))
				}
				store.apply(d.Event.GetAlertId())
				mu.Lock()
				order = append(order, d.Event.GetAlertId())
				mu.Unlock()
				return nil
			})
	}()
	deadline := time.Now().Add(90 * time.Second)
	for store.distinct() < len(ids)-1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	dead := readDLQ(t, cfg, 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if store.distinct() != len(ids)-1 {
		t.Fatalf("%d of %d good records applied", store.distinct(), len(ids)-1)
	}
	if dead[0] != "poison" {
		t.Fatalf("dead-lettered %v, want poison", dead)
	}
	mu.Lock()
	defer mu.Unlock()
	want := 0
	for _, id := range order {
		if id != fmt.Sprintf("ok-%02d", want) {
			t.Fatalf("applied out of order: %v", order)
		}
		want++
	}
}

// readDLQ waits until the dead-letter topic holds n records and returns
// their alert ids.
func readDLQ(t *testing.T, cfg Config, n int) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ids []string
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := ReadTopic(ctx, cfg, cfg.DLQTopic, func(key, _ []byte, _ int, _ int64) error {
			ids = append(ids, string(key))
			return nil
		})
		cancel()
		if err == nil && len(ids) >= n {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead-letter topic holds %v (error %v), want %d records", ids, err, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
