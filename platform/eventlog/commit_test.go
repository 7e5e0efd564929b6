package eventlog

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// commitRecorder is an injected commitOffsets that records each call and
// fails the first failFirst of them.
type commitRecorder struct {
	mu        sync.Mutex
	calls     []map[int]int64
	failFirst int
	called    chan struct{}
}

func newCommitRecorder(failFirst int) *commitRecorder {
	return &commitRecorder{failFirst: failFirst, called: make(chan struct{}, 100)}
}

func (r *commitRecorder) commit(_ *kafka.Generation, offsets map[string]map[int]int64) error {
	r.mu.Lock()
	defer func() { r.mu.Unlock(); r.called <- struct{}{} }()
	r.calls = append(r.calls, maps.Clone(offsets["events"]))
	if len(r.calls) <= r.failFirst {
		return errors.New("injected commit failure")
	}
	return nil
}

func (r *commitRecorder) snapshot() []map[int]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[int]int64(nil), r.calls...)
}

func waitCalled(t *testing.T, r *commitRecorder, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for range n {
		select {
		case <-r.called:
		case <-deadline:
			t.Fatalf("waited 30 s for commit %d of %d", len(r.snapshot())+1, n)
		}
	}
}

func commitTestConsumer(r *commitRecorder) *consumer {
	return &consumer{cfg: ConsumerConfig{Topic: "events", Logger: slog.New(slog.DiscardHandler), commitOffsets: r.commit}}
}

// Records handled together go out in one commit that carries the newest
// offset of each partition, and a consumer that handles nothing sends no
// commit at all.
func TestCommitLoopCommitsHandledOffsetsOnceAndNothingWhenIdle(t *testing.T) {
	r := newCommitRecorder(0)
	c := commitTestConsumer(r)
	k := newCommitter()
	for _, m := range []kafka.Message{{Partition: 0, Offset: 4}, {Partition: 0, Offset: 5}, {Partition: 3, Offset: 9}} {
		k.note(m)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); c.commitLoop(ctx, nil, k) }()
	waitCalled(t, r, 1)
	// Idle for many intervals: nothing handled, so nothing is committed
	// (whatever the timing, an empty committer never commits).
	time.Sleep(5 * commitInterval)
	cancel()
	<-done
	calls := r.snapshot()
	if len(calls) != 1 {
		t.Fatalf("commits = %v, want exactly one", calls)
	}
	if want := map[int]int64{0: 6, 3: 10}; !maps.Equal(calls[0], want) {
		t.Fatalf("committed %v, want %v", calls[0], want)
	}
}

// A commit that fails is tried again with the same offsets, even when no
// further record is handled (the loop sleeps only while it has nothing to
// commit).
func TestCommitLoopRetriesAFailedCommitWithoutNewRecords(t *testing.T) {
	r := newCommitRecorder(1)
	c := commitTestConsumer(r)
	k := newCommitter()
	k.note(kafka.Message{Partition: 2, Offset: 41})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); c.commitLoop(ctx, nil, k) }()
	waitCalled(t, r, 2)
	cancel()
	<-done
	calls := r.snapshot()
	want := map[int]int64{2: 42}
	if !maps.Equal(calls[0], want) || !maps.Equal(calls[1], want) {
		t.Fatalf("commits = %v, want %v twice (the failed one, then its retry)", calls, want)
	}
	if next := k.take(); len(next) != 0 {
		t.Fatalf("offsets %v still waiting after a successful retry", next)
	}
}
