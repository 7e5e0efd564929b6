package eventlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/fault"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// ErrTooFarBehind is returned by Tail.Unhandled when the consumer group is
// further behind on the key's partition than the caller's bound: reading
// the gap would cost more than waiting for the group. It wraps
// fault.ErrUnavailable (retry later).
var ErrTooFarBehind = errors.New("consumer group is too far behind on the partition")

// Tail gives read-your-writes on the event log for one key: the records of
// that key that are in the log now but that a consumer group may not have
// handled yet. A projection kept by that group (a Redis state store, say)
// plus these records is the key's state as the log has it, whatever the
// group's lag: a replica that died with a partition, a rebalance, a
// catch-up.
//
// It costs two small requests (the group's committed offset, usually
// reused from a read of the last 100 ms, and the partition's end offset)
// and, only when the group has not committed up to the end, one fetch from
// the committed offset.
type Tail struct {
	cfg    Config
	topic  string
	group  string
	client *kafka.Client
	close  func()
	// verifier drops forged records (nil: none configured); verifierErr
	// is why the configured key set could not be loaded, returned by
	// every read.
	verifier    *Verifier
	verifierErr error

	mu         sync.Mutex
	partitions int
	segments   map[int]*segment // per partition, what was read past the committed offset

	ends coalescer[map[int]endOffset] // the partitions' end offsets, one request for all callers waiting

	// The group's committed offsets, read for every partition at once and
	// reused (committed): a committed offset only grows, so an older one is
	// safe (the caller reads a little more of the log), and concurrent
	// decisions share one request and never wait for a refresh.
	cmu        sync.Mutex
	offsets    map[int]int64
	readAt     time.Time
	refreshing bool
}

// committedTTL is how long the group's committed offsets are reused as
// they are, committedMaxAge how long they may serve while a refresh runs.
const (
	committedTTL    = 100 * time.Millisecond
	committedMaxAge = 2 * time.Second
)

// NewTail returns a Tail of cfg's events topic for the consumer group.
// Close it when done.
func NewTail(cfg Config, group string) *Tail {
	client, closeIdle := cfg.Client(10 * time.Second)
	t := &Tail{cfg: cfg, topic: cfg.EventsTopic, group: group, client: client, close: closeIdle}
	t.verifier, t.verifierErr = NewVerifier(cfg)
	t.ends.fn = t.readEnds
	return t
}

// Close releases the Tail's connections.
func (t *Tail) Close() { t.close() }

// Unhandled returns, in log order, the events of key at or after the later
// of the group's committed offset and after+1 on key's partition, up to the
// partition's end (high watermark) when called: every event of key that an
// append acknowledged before the call and that the group may not have
// handled. after is the offset of the last event of key the caller has
// applied (-1: none). When more than limit records would have to be read, it
// returns an error wrapping ErrTooFarBehind.
//
// The caller's state must have been read after the group's committed
// offset was known; Read orders the two for a caller that reads its state
// as part of the call.
func (t *Tail) Unhandled(ctx context.Context, key string, after int64, limit int) ([]Delivery, error) {
	return t.Read(ctx, key, limit, func(context.Context) (int64, error) { return after, nil })
}

// Read is read-your-log for a decision on a projection: it learns the
// group's committed offset of key's partition, then calls project (which
// reads the projection and returns the offset of the last event of key it
// is known to hold, or -1), then reads the partition's end and returns, in
// log order, the events of key from the later of the committed offset and
// after+1 up to that end. The order is the point: a record below the
// committed offset was handled, so stored, before project read the
// projection; a record at or above it is returned. Reading the committed
// offset after the projection would leave a hole (a record handled and
// committed in between, in neither). An error of project is returned as
// it is. When more than limit records would have to be read, it returns an
// error wrapping ErrTooFarBehind.
func (t *Tail) Read(ctx context.Context, key string, limit int, project func(context.Context) (after int64, err error)) ([]Delivery, error) {
	if t.verifierErr != nil {
		return nil, t.verifierErr
	}
	p, err := t.partitionOf(ctx, key)
	if err != nil {
		return nil, err
	}
	committed, err := t.committed(ctx, p)
	if err != nil {
		return nil, fault.Unavailable(fmt.Sprintf("read the committed offset of %s/%d: %v", t.topic, p, err))
	}
	after, err := project(ctx)
	if err != nil {
		return nil, err
	}
	end, err := t.endOffset(ctx, p)
	if err != nil {
		return nil, fault.Unavailable(fmt.Sprintf("read the end of %s/%d: %v", t.topic, p, err))
	}
	from := max64(committed, after+1)
	if from >= end {
		return nil, nil
	}
	if end-from > int64(limit) {
		return nil, fmt.Errorf("%w (%s/%d: %d records between %d and the end %d): %w", ErrTooFarBehind, t.topic, p, end-from, from, end, fault.ErrUnavailable)
	}
	var raw []rawRecord
	if end-committed <= int64(limit) {
		raw, err = t.segment(p).read(ctx, t, p, key, committed, from, end)
	} else {
		// The group is further behind than the bound but the caller's state
		// is not: read just the caller's gap, uncached.
		err = readPartition(ctx, t.client, t.topic, p, from, end, func(k, value []byte, headers []kafka.Header, _ int, offset int64) error {
			if string(k) == key {
				raw = append(raw, rawRecord{offset: offset, value: value, sig: SignatureOf(headers)})
			}
			return nil
		})
	}
	if err != nil {
		return nil, fault.Unavailable(fmt.Sprintf("read %s/%d from %d: %v", t.topic, p, from, err))
	}
	var out []Delivery
	for _, r := range raw {
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(r.value, ev); err != nil || ev.GetEventId() == "" {
			continue // the consumer dead-letters it; it never reaches the projection either
		}
		if t.verifier != nil {
			if err := t.verifier.Check(t.topic, []byte(key), r.value, []kafka.Header{{Key: eventsign.HeaderSignature, Value: r.sig}}, ev); err != nil {
				// A forged record: likewise dead-lettered by the consumer,
				// never folded; said here too, as the read skips it.
				t.verifier.Refused(ctx, Refusal{Path: PathTail, Group: t.group, Topic: t.topic, Partition: p, Offset: r.offset, Event: ev}, err)
				continue
			}
		}
		out = append(out, Delivery{Event: ev, Type: TypeOf(ev), Topic: t.topic, Partition: p, Offset: r.offset})
	}
	return out, nil
}

// rawRecord is a record of the segment: its offset and undecoded value
// (each caller decodes its own copy).
type rawRecord struct {
	offset int64
	value  []byte
	sig    []byte // the signature header, verified by each caller
}

// segment is what the Tail read of one partition beyond the group's
// committed offset, by key, shared by every decision on that partition:
// decisions come many at a time (every timer that fires, every message
// about to go) and want the same few hundred records, so each one fetches
// only what was appended since the last fetch, and concurrent callers wait
// for one fetch instead of each making its own.
type segment struct {
	mu    sync.Mutex
	from  int64 // the first offset held
	to    int64 // the offset after the last one read
	byKey map[string][]rawRecord
}

// pruneAfter is how far the committed offset moves past the segment's
// start before the records below it are dropped.
const pruneAfter = 2048

func (t *Tail) segment(p int) *segment {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.segments == nil {
		t.segments = map[int]*segment{}
	}
	s := t.segments[p]
	if s == nil {
		s = &segment{}
		t.segments[p] = s
	}
	return s
}

// read returns key's records in [from, end), reading the partition from
// the end of what the segment holds (or, when the segment does not hold
// committed onwards, from committed) up to end.
func (s *segment) read(ctx context.Context, t *Tail, p int, key string, committed, from, end int64) ([]rawRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.byKey == nil || committed < s.from || committed > s.to:
		s.from, s.to, s.byKey = committed, committed, map[string][]rawRecord{}
	case committed-s.from > pruneAfter:
		for k, rs := range s.byKey {
			i := 0
			for i < len(rs) && rs[i].offset < committed {
				i++
			}
			if i == len(rs) {
				delete(s.byKey, k)
			} else if i > 0 {
				s.byKey[k] = append([]rawRecord(nil), rs[i:]...)
			}
		}
		s.from = committed
	}
	if s.to < end {
		err := readPartition(ctx, t.client, t.topic, p, s.to, end, func(k, value []byte, headers []kafka.Header, _ int, offset int64) error {
			s.byKey[string(k)] = append(s.byKey[string(k)], rawRecord{offset: offset, value: value, sig: SignatureOf(headers)})
			s.to = offset + 1
			return nil
		})
		if err != nil {
			return nil, err
		}
		// s.to stays after the last record read: a fetch can end short of
		// end (nothing readable there yet), and what it did not read must be
		// read by the next caller, never taken as read.
	}
	var out []rawRecord
	for _, r := range s.byKey[key] {
		if r.offset >= from && r.offset < end {
			out = append(out, r)
		}
	}
	return out, nil
}

// partitionOf returns the partition the producer writes key to (kafka.Hash
// over the topic's partitions, as Writer.Append does).
func (t *Tail) partitionOf(ctx context.Context, key string) (int, error) {
	t.mu.Lock()
	n := t.partitions
	t.mu.Unlock()
	if n == 0 {
		meta, err := t.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{t.topic}})
		if err == nil && (len(meta.Topics) != 1 || meta.Topics[0].Error != nil) {
			err = fmt.Errorf("topic not found: %v", meta.Topics)
		}
		if err != nil {
			return 0, fault.Unavailable(fmt.Sprintf("read metadata of %s: %v", t.topic, err))
		}
		n = len(meta.Topics[0].Partitions)
		t.mu.Lock()
		t.partitions = n
		t.mu.Unlock()
	}
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(key)}, parts...), nil
}

// endOffset returns the end offset (high watermark) of p, read after the
// call began. Concurrent callers share one ListOffsets request for every
// partition (ends): a decision per timer or per message would otherwise
// each make its own.
func (t *Tail) endOffset(ctx context.Context, p int) (int64, error) {
	ends, _, err := t.ends.do(ctx)
	if err != nil {
		return 0, err
	}
	e, ok := ends[p]
	if !ok {
		return 0, fmt.Errorf("no end offset for partition %d", p)
	}
	return e.offset, e.err
}

type endOffset struct {
	offset int64
	err    error
}

// readEnds reads the end offset of every partition in one request.
func (t *Tail) readEnds(ctx context.Context) (map[int]endOffset, error) {
	t.mu.Lock()
	n := t.partitions
	t.mu.Unlock()
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for p := range n {
		req.Topics[t.topic] = append(req.Topics[t.topic], kafka.LastOffsetOf(p))
	}
	res, err := t.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make(map[int]endOffset, n)
	for _, po := range res.Topics[t.topic] {
		out[po.Partition] = endOffset{offset: po.LastOffset, err: po.Error}
	}
	return out, nil
}

// committed returns the group's committed offset of p (0 when it has none:
// the group starts at the beginning of the log). Offsets read less than
// committedTTL ago are used as they are; older ones are used too while one
// request refreshes them in the background (a committed offset only grows,
// so an older one only makes the caller read more), unless they are older
// than committedMaxAge.
func (t *Tail) committed(ctx context.Context, p int) (int64, error) {
	t.cmu.Lock()
	offs, age := t.offsets, time.Since(t.readAt)
	if offs != nil && age < committedMaxAge {
		if age >= committedTTL && !t.refreshing {
			t.refreshing = true
			go func() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				_, _ = t.readCommitted(rctx)
			}()
		}
		t.cmu.Unlock()
		return offs[p], nil
	}
	t.cmu.Unlock()
	offs, err := t.readCommitted(ctx)
	if err != nil {
		return 0, err
	}
	return offs[p], nil
}

// readCommitted reads the group's committed offsets of every partition in
// one request and keeps them.
func (t *Tail) readCommitted(ctx context.Context) (map[int]int64, error) {
	t.mu.Lock()
	n := t.partitions
	t.mu.Unlock()
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	start := time.Now()
	res, err := t.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: t.group, Topics: map[string][]int{t.topic: parts}})
	if err == nil {
		err = res.Error
	}
	offs := make(map[int]int64, n)
	if err == nil {
		for _, po := range res.Topics[t.topic] {
			if po.Error != nil {
				err = po.Error
				break
			}
			offs[po.Partition] = max64(po.CommittedOffset, 0)
		}
	}
	t.cmu.Lock()
	defer t.cmu.Unlock()
	t.refreshing = false
	if err != nil {
		return nil, err
	}
	if start.After(t.readAt) {
		t.offsets, t.readAt = offs, start
	}
	return offs, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
