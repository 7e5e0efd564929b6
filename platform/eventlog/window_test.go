package eventlog

import (
	"slices"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestWindowCommitsOnlyTheHandledRunAtTheFront(t *testing.T) {
	var w window
	recs := make([]*pending, 5)
	for i := range recs {
		recs[i] = w.add(kafka.Message{Offset: int64(10 + i)})
	}
	var commits []int64
	commit := func(m kafka.Message) { commits = append(commits, m.Offset) }

	w.done(commit, recs[2]) // 10 and 11 still in hand
	w.done(commit, recs[1])
	if len(commits) != 0 {
		t.Fatalf("committed %v while offset 10 is still being handled", commits)
	}
	w.done(commit, recs[0]) // 10, 11 and 12 are now a handled run
	w.done(commit, recs[4]) // 13 still in hand
	w.done(commit, recs[3])
	if want := []int64{12, 14}; !slices.Equal(commits, want) {
		t.Fatalf("commits: got %v, want %v", commits, want)
	}
	if len(w.recs) != 0 {
		t.Fatalf("window holds %d records after all were handled", len(w.recs))
	}
}

func TestLaneOfKeepsAKeyOnOneLane(t *testing.T) {
	if got := laneOf([]byte("alert-1"), 1); got != 0 {
		t.Fatalf("one lane: got lane %d", got)
	}
	used := map[int]bool{}
	for i := range 64 {
		key := []byte{byte(i), 'a'}
		l := laneOf(key, 4)
		if l < 0 || l >= 4 || laneOf(key, 4) != l {
			t.Fatalf("key %q: lane %d is out of range or unstable", key, l)
		}
		used[l] = true
	}
	if len(used) != 4 {
		t.Fatalf("64 keys used lanes %v, want all 4", used)
	}
}
