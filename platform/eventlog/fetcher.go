package eventlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"
	"github.com/segmentio/kafka-go/protocol/metadata"
)

// A generation of the consumer group is consumed with one fetch request per
// partition leader that covers every partition this member holds on that
// leader (kafka-go's Reader sends one per partition, so with twelve
// partitions nearly every fetch carried one or two records; the broker's
// cost follows the number of requests). After a fetch that brought several
// records (lingerAfter), the fetcher waits FetchLinger before the next, so
// that under load one request carries many; a record after a quiet spell
// is not delayed, since the pending fetch returns as soon as it arrives.

const (
	// commitInterval is how long handled offsets wait to be committed:
	// the first record handled after a commit starts the wait, and the
	// commit then carries every offset handled meanwhile (and once more
	// when a generation ends). A consumer with nothing handled sends no
	// commit and its commit loop does not wake. Each commit is a Kafka
	// round trip and a write to __consumer_offsets whatever the rate, so
	// the interval sets a fixed cost per second: at 50 ms, 20 commits a
	// second per group as soon as 20 records a second flowed, which at 30
	// alerts/s was 0.13 ms of a service's CPU per alert
	// (docs/performance.md, "Cost per alert"). A longer interval only
	// means more records handled again after a crash (at least once;
	// handlers are idempotent).
	commitInterval = 200 * time.Millisecond
	// fetchMaxWait bounds how long the broker holds a fetch that finds no
	// records.
	fetchMaxWait  = 250 * time.Millisecond
	fetchMaxBytes = 10 << 20
	// partitionMaxBytes is about a queue's worth of small records: what a
	// fetch brings beyond the room in a partition's queue is read again
	// later, so a larger limit only wastes the broker's and the decoder's
	// work (catching up on 100,000 records: 1 MiB 100,000 events/s, 256 KiB
	// 240,000-250,000, 128 KiB 360,000).
	partitionMaxBytes = 128 << 10
	// pauseWait is how long a fetcher whose partitions are all full waits
	// before it looks again, and pausedMaxWait how long the broker may hold
	// a fetch while one of the fetcher's partitions is left out of it.
	pauseWait     = time.Millisecond
	pausedMaxWait = 5 * time.Millisecond
	// lingerAfter is how many records a fetch must bring for the fetcher
	// to linger: a lone record says the log is quiet, and lingering after
	// it would only delay the next alert's events (at 100 alerts/s,
	// lingering after every fetch put 1.2 ms on the median ACK-to-email).
	lingerAfter = 4
)

// generation consumes the partitions gen assigns to this member until the
// generation ends or ctx is done. Records in hand when it ends are not
// committed; the partition's next owner gets them again (at least once).
func (c *consumer) generation(ctx context.Context, gen *kafka.Generation) {
	var offsets map[int]*int64
	for {
		var err error
		if offsets, err = c.startOffsets(ctx, gen.Assignments[c.cfg.Topic]); err == nil {
			break
		}
		c.cfg.Logger.Warn("read start offsets", "group", c.cfg.GroupID, "topic", c.cfg.Topic, "error", err)
		if !sleep(ctx, c.cfg.MinBackoff) {
			return
		}
	}
	commits := newCommitter()
	var wg sync.WaitGroup
	parts := make(map[int]*partition, len(offsets))
	for p := range offsets {
		parts[p] = c.startPartition(ctx, &wg, commits.note)
	}
	wg.Go(func() { c.commitLoop(ctx, gen, commits) })
	if len(offsets) > 0 {
		c.fetch(ctx, offsets, parts)
	}
	<-ctx.Done() // a member with no partitions waits for the next generation
	wg.Wait()
	c.commit(gen, commits)
}

// startOffsets turns the assignment into the next offset to fetch for each
// partition, asking the broker where the log starts or ends for a partition
// the group has committed nothing for.
func (c *consumer) startOffsets(ctx context.Context, assigned []kafka.PartitionAssignment) (map[int]*int64, error) {
	offsets := make(map[int]*int64, len(assigned))
	relative := false
	for _, a := range assigned {
		off := a.Offset
		offsets[a.ID] = &off
		relative = relative || off < 0
	}
	if !relative {
		return offsets, nil
	}
	bounds, err := c.bounds(ctx)
	if err != nil {
		return nil, err
	}
	for p, off := range offsets {
		if *off >= 0 {
			continue
		}
		b, ok := bounds[p]
		if !ok {
			return nil, fmt.Errorf("list offsets of %s/%d: no answer", c.cfg.Topic, p)
		}
		if *off == kafka.LastOffset {
			*off = b.LastOffset
		} else {
			*off = b.FirstOffset
		}
	}
	return offsets, nil
}

// bounds returns where each partition of the topic starts and ends.
func (c *consumer) bounds(ctx context.Context) (map[int]kafka.PartitionOffsets, error) {
	offs, err := partitionOffsets(ctx, &kafka.Client{Addr: c.addr, Transport: c.transport}, c.cfg.Topic)
	if err != nil {
		return nil, err
	}
	bounds := make(map[int]kafka.PartitionOffsets, len(offs))
	for _, po := range offs {
		bounds[po.Partition] = po
	}
	return bounds, nil
}

// fetch runs one fetcher per partition leader until ctx is done. When a
// fetcher finds that leadership moved (or cannot reach its broker), all
// stop, the leaders are read again, and fetching resumes where it was.
func (c *consumer) fetch(ctx context.Context, offsets map[int]*int64, parts map[int]*partition) {
	backoff := c.cfg.MinBackoff
	for ctx.Err() == nil {
		var fetched atomic.Bool
		leaders, err := topicLeaders(ctx, c.transport, c.addr, c.cfg.Topic)
		if err != nil {
			c.cfg.Logger.Warn("read partition leaders", "group", c.cfg.GroupID, "topic", c.cfg.Topic, "error", err)
		} else {
			byLeader := map[int32][]int{}
			for p := range offsets {
				leader := int32(-1)
				if p < len(leaders) {
					leader = leaders[p]
				}
				byLeader[leader] = append(byLeader[leader], p)
			}
			fctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			for _, ps := range byLeader {
				wg.Go(func() {
					defer stop() // a fetcher ends only when the leaders must be read again
					if c.fetchFrom(fctx, ps, offsets, parts) {
						fetched.Store(true)
					}
				})
			}
			wg.Wait()
			stop()
		}
		if fetched.Load() {
			backoff = c.cfg.MinBackoff
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// fetchFrom fetches the partitions ps (all led by one broker) and hands
// their records to their lanes, until ctx is done or the broker answers in a
// way that asks for the leaders to be read again. It reports whether any
// fetch succeeded.
func (c *consumer) fetchFrom(ctx context.Context, ps []int, offsets map[int]*int64, parts map[int]*partition) bool {
	fetched := false
	for ctx.Err() == nil {
		ready := ps[:0:0]
		for _, p := range ps {
			if parts[p].ready() {
				ready = append(ready, p)
			}
		}
		if len(ready) == 0 {
			sleep(ctx, pauseWait) // every partition has more than half its room in hand
			continue
		}
		wait := fetchMaxWait
		if len(ready) < len(ps) {
			wait = pausedMaxWait // a paused partition must not wait out a long poll of the others
		}
		req := &fetchapi.Request{ReplicaID: -1, MaxWaitTime: int32(wait / time.Millisecond), MinBytes: 1,
			MaxBytes: fetchMaxBytes, SessionID: -1, SessionEpoch: -1}
		topic := fetchapi.RequestTopic{Topic: c.cfg.Topic}
		for _, p := range ready {
			topic.Partitions = append(topic.Partitions, fetchapi.RequestPartition{Partition: int32(p), CurrentLeaderEpoch: -1,
				FetchOffset: *offsets[p], LogStartOffset: -1, PartitionMaxBytes: partitionMaxBytes})
		}
		req.Topics = []fetchapi.RequestTopic{topic}
		msg, err := c.transport.RoundTrip(ctx, c.addr, req)
		if err == nil && msg.(*fetchapi.Response).ErrorCode != 0 {
			err = kafka.Error(msg.(*fetchapi.Response).ErrorCode)
		}
		if err != nil {
			if ctx.Err() == nil {
				c.cfg.Logger.Warn("fetch from kafka", "brokers", c.cfg.Brokers, "topic", c.cfg.Topic, "error", err)
			}
			return fetched
		}
		fetched = true
		got, relayout := 0, false
		for _, t := range msg.(*fetchapi.Response).Topics {
			for i := range t.Partitions {
				n, ok := c.deliver(ctx, &t.Partitions[i], offsets, parts)
				got += n
				relayout = relayout || !ok
			}
		}
		if relayout {
			return fetched
		}
		if got >= lingerAfter && c.cfg.FetchLinger > 0 {
			sleep(ctx, c.cfg.FetchLinger)
		}
	}
	return fetched
}

// deliver hands a fetched partition's records at or after its next offset
// to their lanes and moves the offset past them, until the partition or a
// lane is full: the rest are fetched again later. It returns false when the
// partition's leaders must be read again.
func (c *consumer) deliver(ctx context.Context, pr *fetchapi.ResponsePartition, offsets map[int]*int64, parts map[int]*partition) (int, bool) {
	p := int(pr.Partition)
	off, ok := offsets[p]
	if !ok {
		return 0, true // not asked for
	}
	if pr.ErrorCode != 0 {
		err := kafka.Error(pr.ErrorCode)
		if errors.Is(err, kafka.OffsetOutOfRange) {
			c.clamp(ctx, p, off)
			return 0, true
		}
		c.cfg.Logger.Warn("fetch partition", "group", c.cfg.GroupID, "topic", c.cfg.Topic, "partition", p, "error", err)
		return 0, false
	}
	records := pr.RecordSet.Records
	if records == nil {
		return 0, true
	}
	n := 0
	for {
		rec, err := records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return n, true
		}
		if err != nil {
			// A malformed or cut-off batch: fetch again from the next offset.
			c.cfg.Logger.Warn("read fetched records", "group", c.cfg.GroupID, "topic", c.cfg.Topic, "partition", p, "offset", *off, "error", err)
			return n, n > 0
		}
		if rec.Offset < *off {
			continue // a batch starts before the offset asked for
		}
		key, kerr := readBytes(rec.Key)
		value, verr := readBytes(rec.Value)
		if err := errors.Join(kerr, verr); err != nil {
			c.cfg.Logger.Warn("read fetched record", "group", c.cfg.GroupID, "topic", c.cfg.Topic, "partition", p, "offset", rec.Offset, "error", err)
			return n, n > 0
		}
		m := kafka.Message{Topic: c.cfg.Topic, Partition: p, Offset: rec.Offset, Key: key, Value: value, Headers: rec.Headers, Time: rec.Time}
		if !parts[p].offer(m) {
			return n, true // full
		}
		*off = rec.Offset + 1
		n++
	}
}

// clamp moves an offset the log no longer (or not yet) holds to the nearest
// one it does, as kafka-go's Reader did: to the log start when records were
// deleted under it (retention), to the end when the log was truncated
// behind it.
func (c *consumer) clamp(ctx context.Context, p int, off *int64) {
	bounds, err := c.bounds(ctx)
	b, ok := bounds[p]
	if err == nil && !ok {
		err = fmt.Errorf("partition %d is not in the answer", p)
	}
	if err != nil {
		c.cfg.Logger.Warn("offset out of range; reading the log's bounds", "group", c.cfg.GroupID, "topic", c.cfg.Topic, "partition", p, "error", err)
		sleep(ctx, c.cfg.MinBackoff)
		return
	}
	was := *off
	switch {
	case was < b.FirstOffset:
		*off = b.FirstOffset
	case was > b.LastOffset:
		*off = b.LastOffset
	default:
		return // in range now (a race with the log's growth): fetch again
	}
	c.cfg.Logger.Warn("offset out of range; resuming at the nearest record", "group", c.cfg.GroupID, "topic", c.cfg.Topic,
		"partition", p, "offset", was, "resume_at", *off)
}

// commit sends the offsets handled since the last commit.
func (c *consumer) commit(gen *kafka.Generation, commits *committer) {
	next := commits.take()
	if len(next) == 0 {
		return
	}
	commitOffsets := c.cfg.commitOffsets
	if commitOffsets == nil {
		commitOffsets = (*kafka.Generation).CommitOffsets
	}
	if err := commitOffsets(gen, map[string]map[int]int64{c.cfg.Topic: next}); err != nil {
		commits.restore(next)
		c.cfg.Logger.Warn("commit offsets", "group", c.cfg.GroupID, "topic", c.cfg.Topic, "error", err)
	}
}

// commitLoop commits handled offsets commitInterval after the first one
// handled since the last commit, until ctx is done. It sleeps while
// nothing is handled (no timer, no wake-up: an idle consumer costs
// nothing).
func (c *consumer) commitLoop(ctx context.Context, gen *kafka.Generation, commits *committer) {
	t := time.NewTimer(commitInterval)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-commits.dirty:
		}
		t.Reset(commitInterval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.commit(gen, commits)
	}
}

// committer collects, per partition, the offset after the last record
// handled without a gap, until it is committed. dirty holds a signal
// while it has offsets to commit.
type committer struct {
	mu    sync.Mutex
	next  map[int]int64
	dirty chan struct{}
}

func newCommitter() *committer {
	return &committer{next: map[int]int64{}, dirty: make(chan struct{}, 1)}
}

func (k *committer) note(m kafka.Message) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if m.Offset+1 > k.next[m.Partition] {
		k.next[m.Partition] = m.Offset + 1
		k.signal()
	}
}

// signal tells the commit loop there is something to commit (k.mu held).
func (k *committer) signal() {
	select {
	case k.dirty <- struct{}{}:
	default:
	}
}

func (k *committer) take() map[int]int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.next) == 0 {
		return nil
	}
	next := k.next
	k.next = map[int]int64{}
	return next
}

// restore puts back offsets whose commit failed, unless newer ones came.
func (k *committer) restore(next map[int]int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for p, off := range next {
		if off > k.next[p] {
			k.next[p] = off
		}
	}
	if len(k.next) > 0 {
		k.signal() // try again after the interval
	}
}

// topicLeaders returns the leader broker of each of topic's partitions, by
// partition.
func topicLeaders(ctx context.Context, rt kafka.RoundTripper, addr net.Addr, topic string) ([]int32, error) {
	res, err := rt.RoundTrip(ctx, addr, &metadata.Request{TopicNames: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of topic %s: %w", topic, err)
	}
	for _, t := range res.(*metadata.Response).Topics {
		if t.Name != topic {
			continue
		}
		if t.ErrorCode != 0 {
			return nil, fmt.Errorf("metadata of topic %s: %w", topic, kafka.Error(t.ErrorCode))
		}
		leaders := make([]int32, len(t.Partitions))
		for _, part := range t.Partitions {
			if part.PartitionIndex < 0 || int(part.PartitionIndex) >= len(t.Partitions) {
				return nil, fmt.Errorf("metadata of topic %s: partition %d of %d", topic, part.PartitionIndex, len(t.Partitions))
			}
			leaders[part.PartitionIndex] = part.LeaderID
		}
		return leaders, nil
	}
	return nil, fmt.Errorf("metadata of topic %s: %w", topic, kafka.UnknownTopicOrPartition)
}
