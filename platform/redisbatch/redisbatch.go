// Package redisbatch lets the Redis calls that many goroutines make at the
// same time share round trips (a group commit), as the event log's
// producer does for Kafka: a lone call goes at once, from its own
// goroutine, and calls that arrive while a round trip is in flight share
// the next one, as one pipeline, sent by the first of them.
// Each call keeps its own replies and errors, a script still runs
// atomically, and a caller's pipeline keeps its order; only the round
// trips are shared. Under load that saves a write and a read per call in
// the caller and in Redis, which is most of what a call costs.
//
// A Batcher carries script calls (it implements redis.Scripter, so
// redis.Script's Run, EVALSHA falling back to EVAL, works through it) and
// plain pipelines (Pipelined). Transactions (TxPipelined) are not shared.
// go-redis has an autopipeliner that does this for every command, but
// marks it experimental; this package uses only go-redis's stable pipeline
// API.
package redisbatch

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// maxBatch bounds the commands of one round trip (a caller's pipeline is
// never split).
const maxBatch = 512

// ErrClosed is the error of a call made after Close.
var ErrClosed = errors.New("redisbatch: closed")

// Batcher shares round trips on rdb. It is safe for concurrent use.
type Batcher struct {
	rdb   redis.UniversalClient
	trips atomic.Int64 // round trips made (tests)

	mu      sync.Mutex
	queue   []*call // waiting for the next round trip
	sending bool    // a round trip is in flight
	closed  bool
}

var _ redis.Scripter = (*Batcher)(nil)

// call is one caller's commands, filled in place by whoever sends them.
// turn gets false once they are filled, or true when the caller is to
// send the next round trip (it is first in the queue).
type call struct {
	cmds     []redis.Cmder
	turn     chan bool
	promoted bool // guarded by Batcher.mu
}

// New returns a Batcher on rdb.
func New(rdb redis.UniversalClient) *Batcher { return &Batcher{rdb: rdb} }

// Close makes later calls fail with ErrClosed. Calls already queued are
// still sent (close the client after it).
func (b *Batcher) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// Pipelined runs the commands fn queues as rdb.Pipelined would: in order,
// returning them and the first of their errors (an error of fn itself
// sends nothing).
func (b *Batcher) Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	p := b.rdb.Pipeline()
	if err := fn(p); err != nil {
		return nil, err
	}
	cmds := p.Cmds()
	if len(cmds) == 0 {
		return cmds, nil
	}
	if err := b.do(ctx, cmds); err != nil {
		return cmds, err
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return cmds, err
		}
	}
	return cmds, nil
}

// Eval implements redis.Scripter.
func (b *Batcher) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return b.one(ctx, b.rdb.Pipeline().Eval(ctx, script, keys, args...))
}

// EvalSha implements redis.Scripter.
func (b *Batcher) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return b.one(ctx, b.rdb.Pipeline().EvalSha(ctx, sha1, keys, args...))
}

// EvalRO implements redis.Scripter.
func (b *Batcher) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return b.one(ctx, b.rdb.Pipeline().EvalRO(ctx, script, keys, args...))
}

// EvalShaRO implements redis.Scripter.
func (b *Batcher) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return b.one(ctx, b.rdb.Pipeline().EvalShaRO(ctx, sha1, keys, args...))
}

// ScriptExists implements redis.Scripter (not shared).
func (b *Batcher) ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd {
	return b.rdb.ScriptExists(ctx, hashes...)
}

// ScriptLoad implements redis.Scripter (not shared).
func (b *Batcher) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	return b.rdb.ScriptLoad(ctx, script)
}

// one sends a single command built (not sent) on a scratch pipeline.
func (b *Batcher) one(ctx context.Context, cmd *redis.Cmd) *redis.Cmd {
	if err := b.do(ctx, []redis.Cmder{cmd}); err != nil {
		failed := redis.NewCmd(ctx, cmd.Args()...)
		failed.SetErr(err)
		return failed
	}
	return cmd
}

// do sends cmds, or has them sent with others', and returns once they are
// filled. When ctx ends first the commands may still run, as with a call
// on the client itself, and the caller must not read them.
func (b *Batcher) do(ctx context.Context, cmds []redis.Cmder) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &call{cmds: cmds, turn: make(chan bool, 1)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.queue = append(b.queue, c)
	first := !b.sending // no round trip in flight: this caller sends
	b.sending = true
	b.mu.Unlock()
	send := first
	if !first {
		select {
		case send = <-c.turn:
		case <-ctx.Done():
			b.mu.Lock()
			if c.promoted { // the next round trip is this caller's to send
				b.mu.Unlock()
				send = <-c.turn
				break
			}
			if i := slices.Index(b.queue, c); i >= 0 {
				b.queue = slices.Delete(b.queue, i, i+1)
			}
			b.mu.Unlock()
			return ctx.Err()
		}
	}
	if send {
		if first {
			// The first caller after a quiet spell lets goroutines that are
			// already runnable (other lanes, other workers) join its round
			// trip; with none, this returns at once.
			runtime.Gosched()
		}
		b.send()
	}
	return nil
}

// send makes one round trip with the queued calls (up to maxBatch
// commands; the sender's own call is first), fills them, and passes the
// turn to the first call still queued.
func (b *Batcher) send() {
	b.mu.Lock()
	n, size := 0, 0
	for n < len(b.queue) && (n == 0 || size+len(b.queue[n].cmds) <= maxBatch) {
		size += len(b.queue[n].cmds)
		n++
	}
	batch := slices.Clone(b.queue[:n])
	b.queue = slices.Delete(b.queue, 0, n)
	b.mu.Unlock()

	b.trips.Add(1)
	// Exec's error is the first failed command's; each caller reads its own.
	_, _ = b.rdb.Pipelined(context.Background(), func(p redis.Pipeliner) error {
		for _, c := range batch {
			_ = p.BatchProcess(context.Background(), c.cmds...)
		}
		return nil
	})
	for _, c := range batch[1:] {
		c.turn <- false
	}

	b.mu.Lock()
	if len(b.queue) > 0 {
		next := b.queue[0]
		next.promoted = true
		next.turn <- true
	} else {
		b.sending = false
	}
	b.mu.Unlock()
}
