package eventlog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/herald-health/herald/platform/clock"
	"github.com/segmentio/kafka-go/protocol/produce"
)

// producer writes records with acks=all, putting the records of concurrent
// writes into one produce request per broker (a group commit). While a
// request is in flight, new writes queue; the next request carries all of
// them, whatever their topics and partitions. A lone write goes at once,
// and under load a request carries every write that arrived during the
// previous round trip. After a request that carried several writes (a sign
// of load) the producer lingers up to 5 ms before the next, until as many
// writes have queued, so that the next carries more. The Java producer has
// waited linger.ms = 5 ms for every batch since Kafka 4.0; this one waits
// only under load. At 1,000 alerts/s that cut the produce requests by a
// third against a 1 ms linger (docs/performance.md, rounds 5 and 6).
//
// kafka-go's Writer batches per partition and waits BatchTimeout for each
// batch to fill; with Herald's synchronous appends spread over many
// partitions nearly every request carried one record. The wire format,
// partitioning (kafka.Hash on the key) and acks are the same.
//
// One request is in flight at a time, so the records of one partition reach
// the broker in the order their writes were queued.
type producer struct {
	transport  kafka.RoundTripper
	addr       net.Addr
	balancer   kafka.Hash
	timeout    time.Duration
	attempts   int
	backoffMin time.Duration
	backoffMax time.Duration
	maxBytes   int
	// After a request of at least lingerAfter writes, the next waits
	// linger.
	linger      time.Duration
	lingerAfter int
	// clock times the linger (tests pass a simulated one).
	clock clock.Clock

	mu     sync.Mutex
	queue  []*write
	closed bool
	wake   chan struct{}
	done   chan struct{}

	layouts map[string]layout // the loop's own; no lock
}

// write is one caller's records.
type write struct {
	msgs  []kafka.Message
	bytes int
	err   error // the outcome, set before done closes
	retry error // the last retriable error, while attempts remain
	done  chan struct{}
}

// layout is what the producer knows of a topic: its partitions' leaders.
type layout struct {
	leaders    []int32 // by partition
	partitions []int   // 0..n-1, for the balancer
	fetched    time.Time
}

// layoutTTL bounds how long a topic's leaders are trusted; a failed write
// forgets them at once.
const layoutTTL = 10 * time.Second

// errProducerClosed is returned by writes after Close.
var errProducerClosed = errors.New("event log writer is closed")

// Defaults of producer.linger and producer.lingerAfter. Requests of two or
// three writes are common well below saturation, where lingering would
// only add latency; four or more say the producer is busy.
const (
	produceLinger      = 5 * time.Millisecond
	produceLingerAfter = 4
)

func newProducer(brokers []string, transport kafka.RoundTripper) *producer {
	p := makeProducer(brokers, transport)
	go p.loop()
	return p
}

// makeProducer returns a producer whose loop is not started yet.
func makeProducer(brokers []string, transport kafka.RoundTripper) *producer {
	return &producer{
		transport:   transport,
		addr:        kafka.TCP(brokers...),
		timeout:     10 * time.Second,
		attempts:    5,
		backoffMin:  50 * time.Millisecond,
		backoffMax:  time.Second,
		maxBytes:    1 << 20,
		linger:      produceLinger,
		lingerAfter: produceLingerAfter,
		clock:       clock.Real{},
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		layouts:     map[string]layout{},
	}
}

// Write queues msgs (each with Topic set) and waits until the broker has
// them all (acks=all), the attempts ran out, or ctx is done. When ctx ends
// first the records may still be written.
func (p *producer) Write(ctx context.Context, msgs ...kafka.Message) error {
	w := &write{msgs: msgs, done: make(chan struct{})}
	for i := range msgs {
		w.bytes += messageBytes(&msgs[i])
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errProducerClosed
	}
	p.queue = append(p.queue, w)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued and stops the producer.
func (p *producer) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.closed = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	<-p.done
}

func (p *producer) loop() {
	defer close(p.done)
	for {
		batch, closed := p.take()
		if len(batch) > 0 {
			p.send(batch)
			if len(batch) >= p.lingerAfter {
				p.lingerFor(len(batch)) // returns at once after Close
			}
			continue
		}
		if closed {
			return
		}
		<-p.wake
	}
}

// lingerFor waits up to p.linger for as many writes as the last request
// carried to queue. Writers that each wait for their write (an MLLP sender
// waiting for its ACK, the lanes of a consumer catching up) are all back in
// the queue as soon as their writes return, and then waiting longer would
// only slow them; writers that come at random (live load) keep coming, and
// waiting lets the next request carry more of them.
func (p *producer) lingerFor(last int) {
	over := p.clock.After(p.linger)
	for {
		p.mu.Lock()
		enough := len(p.queue) >= last || p.closed
		p.mu.Unlock()
		if enough {
			return
		}
		select {
		case <-p.wake:
		case <-over:
			return
		}
	}
}

// take removes up to maxBytes of queued writes (at least one).
func (p *producer) take() ([]*write, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, size := 0, 0
	for n < len(p.queue) && (n == 0 || size+p.queue[n].bytes <= p.maxBytes) {
		size += p.queue[n].bytes
		n++
	}
	batch := p.queue[:n:n]
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil
	}
	return batch, p.closed
}

// record locates one message of a batch.
type record struct{ write, msg int }

type topicPartition struct {
	topic     string
	partition int32
}

// send writes the batch and completes every write. What failed with a
// retriable error (an unknown leader, a broker restarting) is tried again up
// to p.attempts times in all; records already written are not sent again,
// and one write's failure does not fail the others.
func (p *producer) send(batch []*write) {
	unassigned := make([]int, len(batch))
	for i := range batch {
		unassigned[i] = i
	}
	pending := map[topicPartition][]record{}
	for attempt := 1; attempt <= p.attempts && len(unassigned)+len(pending) > 0; attempt++ {
		if attempt > 1 {
			time.Sleep(min(p.backoffMin<<(attempt-2), p.backoffMax))
		}
		unassigned = p.assign(batch, unassigned, pending)
		pending = p.produce(batch, pending)
	}
	for _, i := range unassigned {
		batch[i].fail(batch[i].retry)
	}
	for _, recs := range pending {
		for _, r := range recs {
			batch[r.write].fail(batch[r.write].retry)
		}
	}
	for _, w := range batch {
		close(w.done)
	}
}

func (w *write) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// assign adds the records of the writes at indexes to pending, each in its
// partition: kafka.Hash of the key over the topic's partitions, as
// kafka-go's Writer does. It returns the writes whose topic could not be
// resolved.
func (p *producer) assign(batch []*write, indexes []int, pending map[topicPartition][]record) []int {
	var left []int
	for _, i := range indexes {
		w := batch[i]
		tps := make([]topicPartition, len(w.msgs))
		var err error
		for j := range w.msgs {
			var l layout
			if l, err = p.layout(w.msgs[j].Topic); err != nil {
				break
			}
			tps[j] = topicPartition{w.msgs[j].Topic, int32(p.balancer.Balance(w.msgs[j], l.partitions...))}
		}
		if err != nil {
			w.retry = err
			left = append(left, i)
			continue
		}
		for j, tp := range tps {
			pending[tp] = append(pending[tp], record{i, j})
		}
	}
	return left
}

// layout returns the topic's partition leaders, asking the cluster when
// they are unknown or older than layoutTTL (the transport caches metadata
// too).
func (p *producer) layout(topic string) (layout, error) {
	if l, ok := p.layouts[topic]; ok && time.Since(l.fetched) < layoutTTL {
		return l, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	leaders, err := topicLeaders(ctx, p.transport, p.addr, topic)
	if err != nil {
		return layout{}, err
	}
	l := layout{leaders: leaders, partitions: make([]int, len(leaders)), fetched: time.Now()}
	for i := range l.partitions {
		l.partitions[i] = i
	}
	p.layouts[topic] = l
	return l, nil
}

// produce sends the pending records, one request per partition leader, and
// returns those to try again, their writes' retry error set. A record that
// failed for good fails its write at once.
func (p *producer) produce(batch []*write, pending map[topicPartition][]record) map[topicPartition][]record {
	results := map[topicPartition]partitionError{}
	byLeader := map[int32]map[topicPartition][]record{}
	for tp, recs := range pending {
		l, err := p.layout(tp.topic)
		if err != nil {
			results[tp] = partitionError{err, true}
			continue
		}
		leader := int32(-1)
		if int(tp.partition) < len(l.leaders) {
			leader = l.leaders[tp.partition]
		}
		if byLeader[leader] == nil {
			byLeader[leader] = map[topicPartition][]record{}
		}
		byLeader[leader][tp] = recs
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, part := range byLeader {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs := p.request(batch, part)
			mu.Lock()
			defer mu.Unlock()
			maps.Copy(results, errs)
		}()
	}
	wg.Wait()
	failed := map[topicPartition][]record{}
	for tp, res := range results {
		for _, r := range pending[tp] {
			if res.retry {
				batch[r.write].retry = res.err
			} else {
				batch[r.write].fail(res.err)
			}
		}
		if res.retry {
			failed[tp] = pending[tp]
		}
	}
	if len(failed) > 0 {
		clear(p.layouts) // leaders may have moved
	}
	return failed
}

// partitionError is why a partition's records were not written, and
// whether trying again may help.
type partitionError struct {
	err   error
	retry bool
}

// request sends one produce request holding part (partitions with one
// leader) and returns the partitions not written.
func (p *producer) request(batch []*write, part map[topicPartition][]record) map[topicPartition]partitionError {
	req := &produce.Request{Acks: int16(kafka.RequireAll), Timeout: int32(p.timeout / time.Millisecond)}
	topics := map[string]int{}
	for tp, recs := range part {
		i, ok := topics[tp.topic]
		if !ok {
			i = len(req.Topics)
			topics[tp.topic] = i
			req.Topics = append(req.Topics, produce.RequestTopic{Topic: tp.topic})
		}
		records := make([]kafka.Record, len(recs))
		for k, r := range recs {
			m := &batch[r.write].msgs[r.msg]
			records[k] = kafka.Record{Time: m.Time, Key: bytesOrNil(m.Key), Value: bytesOrNil(m.Value), Headers: m.Headers}
		}
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, produce.RequestPartition{
			Partition: tp.partition,
			RecordSet: protocol.RecordSet{Records: kafka.NewRecordReader(records...)},
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	errs := map[topicPartition]partitionError{}
	res, err := p.transport.RoundTrip(ctx, p.addr, req)
	if err != nil {
		// The request may not have reached the broker (a restart, a moved
		// leader): try it again whatever the error.
		for tp := range part {
			errs[tp] = partitionError{fmt.Errorf("produce: %w", err), true}
		}
		return errs
	}
	answered := map[topicPartition]bool{}
	for _, t := range res.(*produce.Response).Topics {
		for _, rp := range t.Partitions {
			tp := topicPartition{t.Topic, rp.Partition}
			if _, asked := part[tp]; !asked {
				continue
			}
			answered[tp] = true
			if rp.ErrorCode != 0 {
				err := fmt.Errorf("produce to %s/%d: %w", tp.topic, tp.partition, kafka.Error(rp.ErrorCode))
				errs[tp] = partitionError{err, retriable(err)}
			}
		}
	}
	for tp := range part {
		if !answered[tp] {
			errs[tp] = partitionError{fmt.Errorf("produce to %s/%d: the broker did not answer for the partition", tp.topic, tp.partition), true}
		}
	}
	return errs
}

func bytesOrNil(b []byte) kafka.Bytes {
	if b == nil {
		return nil
	}
	return kafka.NewBytes(b)
}

// messageBytes approximates a message's size on the wire.
func messageBytes(m *kafka.Message) int {
	n := len(m.Key) + len(m.Value) + 24
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 4
	}
	return n
}
