package eventlog

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Freshness is a read-your-log barrier for a consumer group: Wait returns
// once every record that is in the log when Wait is called, on the
// partition of a key, has been handled by the group. A service that decides
// from a projection fed by the group (notification: "may this message still
// go out?") waits on it first, so that an event already in the log before
// the decision (an acknowledgement that follows the routing in a backlog)
// is applied before the decision is made.
//
// "Handled" is known from two sources: the records this process's consumer
// handled (Consume reports them when ConsumerConfig.Freshness is set), and
// the group's committed offsets, which cover partitions another member
// handles. The end offsets are read with one ListOffsets request shared by
// every caller that arrived before it was sent; the committed offsets are
// read at most every commitInterval.
type Freshness struct {
	topic, group string
	client       *kafka.Client
	closeIdle    func()

	mu      sync.Mutex
	handled map[int]int64 // next offset to handle, per partition, known handled
	// local is what this process's consumer has in hand in its current
	// generation, per partition: a key's records all go through one lane in
	// order, so once every record before the end was dispatched and none of
	// the key's is still pending, the key's events before the end are all
	// applied, whatever other keys' records still wait.
	local   map[int]*inHand
	changed chan struct{} // closed when handled grows or a record is handled
	parts   []int         // the topic's partitions, sorted
	partsAt time.Time

	ends      coalescer[map[int]int64]
	committed coalescer[map[int]int64]
}

// NewFreshness returns the barrier of group on topic (the events topic when
// empty). Close releases its connections.
func NewFreshness(cfg Config, group, topic string) *Freshness {
	if topic == "" {
		topic = cfg.EventsTopic
	}
	client, closeIdle := cfg.Client(10 * time.Second)
	f := &Freshness{topic: topic, group: group, client: client, closeIdle: closeIdle,
		handled: map[int]int64{}, local: map[int]*inHand{}, changed: make(chan struct{})}
	f.ends.fn = f.readEnds
	f.committed.fn = f.readCommitted
	return f
}

// Close releases the connections.
func (f *Freshness) Close() { f.closeIdle() }

// Handled records that the records of partition before next were handled
// by this process (Consume calls it as the handled run of a partition
// grows). It is a fact that stays true whoever owns the partition later.
func (f *Freshness) Handled(partition int, next int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if next <= f.handled[partition] {
		return
	}
	f.handled[partition] = next
	close(f.changed)
	f.changed = make(chan struct{})
}

// inHand is a partition's records this process dispatched in its current
// generation.
type inHand struct {
	// next is the offset after the last record dispatched; the records
	// before the generation's start offset were handled by the group.
	next    int64
	pending map[string]int // records dispatched and not yet handled, by key
}

// began notes that this process consumes partition from offset start (the
// group's committed offset: every record before it was handled).
func (f *Freshness) began(partition int, start int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.local[partition] = &inHand{next: start, pending: map[string]int{}}
}

// ended notes that this process's generation ended for partition: records
// still pending were not handled and will be redelivered elsewhere.
func (f *Freshness) ended(partition int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.local, partition)
}

// dispatched notes a record handed to a lane.
func (f *Freshness) dispatched(partition int, key string, offset int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.local[partition]
	if h == nil {
		return
	}
	h.pending[key]++
	h.next = max(h.next, offset+1)
}

// handledKey notes a dispatched record of key handled.
func (f *Freshness) handledKey(partition int, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h := f.local[partition]; h != nil && h.pending[key] > 0 {
		if h.pending[key]--; h.pending[key] == 0 {
			delete(h.pending, key)
		}
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// Wait blocks until every record of key's partition that was in the log
// when Wait was called has been handled by the group, or ctx ends (its
// error is returned). asOf is when the end of the log was read: an event
// appended before asOf is covered, one appended after it may not be.
func (f *Freshness) Wait(ctx context.Context, key string) (asOf time.Time, err error) {
	asOf = time.Now()
	p, err := f.partition(ctx, key)
	if err != nil {
		return asOf, err
	}
	ends, started, err := f.ends.do(ctx)
	if err != nil {
		return asOf, fmt.Errorf("read the end of %s: %w", f.topic, err)
	}
	asOf = started
	end, ok := ends[p]
	if !ok {
		return asOf, fmt.Errorf("read the end of %s: no answer for partition %d", f.topic, p)
	}
	var lastCommitted time.Time
	for {
		f.mu.Lock()
		done, changed := f.handled[p] >= end, f.changed
		if h := f.local[p]; !done && h != nil && h.next >= end && h.pending[key] == 0 {
			done = true // every record before end dispatched, none of key's pending
		}
		f.mu.Unlock()
		if done {
			return asOf, nil
		}
		if time.Since(lastCommitted) >= commitInterval {
			lastCommitted = time.Now()
			if c, _, err := f.committed.do(ctx); err == nil && c[p] >= end {
				f.Handled(p, c[p])
				return asOf, nil
			}
		}
		t := time.NewTimer(commitInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return asOf, ctx.Err()
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// partition is the partition the writer puts key on: kafka.Hash over the
// topic's partitions (see producer.assign).
func (f *Freshness) partition(ctx context.Context, key string) (int, error) {
	f.mu.Lock()
	parts, at := f.parts, f.partsAt
	f.mu.Unlock()
	if parts == nil || time.Since(at) > layoutTTL {
		meta, err := f.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{f.topic}})
		if err != nil {
			return 0, fmt.Errorf("read metadata of %s: %w", f.topic, err)
		}
		if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
			return 0, fmt.Errorf("read metadata of %s: topic not served", f.topic)
		}
		parts = nil
		for _, p := range meta.Topics[0].Partitions {
			parts = append(parts, p.ID)
		}
		slices.Sort(parts)
		f.mu.Lock()
		f.parts, f.partsAt = parts, time.Now()
		f.mu.Unlock()
	}
	var h kafka.Hash
	return h.Balance(kafka.Message{Key: []byte(key)}, parts...), nil
}

// readEnds reads the end offset of every partition, in one ListOffsets
// request (the partitions are known from partition, called first).
func (f *Freshness) readEnds(ctx context.Context) (map[int]int64, error) {
	f.mu.Lock()
	parts := f.parts
	f.mu.Unlock()
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range parts {
		req.Topics[f.topic] = append(req.Topics[f.topic], kafka.LastOffsetOf(p))
	}
	res, err := f.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", f.topic, err)
	}
	out := make(map[int]int64, len(parts))
	for _, po := range res.Topics[f.topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", f.topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

func (f *Freshness) readCommitted(ctx context.Context) (map[int]int64, error) {
	f.mu.Lock()
	parts := f.parts
	f.mu.Unlock()
	res, err := f.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: f.group, Topics: map[string][]int{f.topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("read committed offsets of group %s: %w", f.group, err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("read committed offsets of group %s: %w", f.group, res.Error)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[f.topic] {
		if p.Error == nil {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// coalescer shares one call of fn among the callers that arrive before it
// starts: a caller that arrives while a call is in flight waits for the
// next one, so every caller gets an answer read after it arrived.
type coalescer[T any] struct {
	fn func(context.Context) (T, error)

	mu       sync.Mutex
	inFlight bool
	next     *call[T]
}

type call[T any] struct {
	done    chan struct{}
	started time.Time
	val     T
	err     error
}

// do returns the answer of a call that started after do was called, and
// when that call started.
func (c *coalescer[T]) do(ctx context.Context) (T, time.Time, error) {
	c.mu.Lock()
	if c.next == nil {
		c.next = &call[T]{done: make(chan struct{})}
	}
	cl := c.next
	if !c.inFlight {
		c.start()
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.val, cl.started, cl.err
	case <-ctx.Done():
		var zero T
		return zero, time.Time{}, ctx.Err()
	}
}

// start runs the waiting call; c.mu is held.
func (c *coalescer[T]) start() {
	cl := c.next
	c.next, c.inFlight = nil, true
	cl.started = time.Now()
	go func() {
		// The call is shared: one caller's cancellation must not fail the others.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cl.val, cl.err = c.fn(ctx)
		cancel()
		c.mu.Lock()
		c.inFlight = false
		if c.next != nil {
			c.start()
		}
		c.mu.Unlock()
		close(cl.done)
	}()
}
