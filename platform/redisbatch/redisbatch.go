// Package redisbatch sends the Lua script calls that many goroutines make
// at the same time to Redis in one pipeline (a group commit), as the event
// log's producer does for Kafka: a lone call goes at once, and calls that
// arrive while a pipeline is in flight share the next one. Each call keeps
// its own reply and error, and each script still runs atomically; only the
// round trips are shared. Under load that saves a write and a read per call
// in the caller and in Redis, which is most of what a call costs.
//
// Scripts implements redis.Scripter, so redis.Script's Run (EVALSHA, and
// EVAL when Redis has forgotten the script) works through it unchanged.
// go-redis has an autopipeliner that does this for every command, but marks
// it experimental; this package covers only script calls, on go-redis's
// stable pipeline API.
package redisbatch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// maxBatch bounds the calls of one pipeline.
const maxBatch = 256

// ErrClosed is the error of a call made after Close.
var ErrClosed = errors.New("redisbatch: closed")

// Scripts batches script calls onto rdb. It is safe for concurrent use.
type Scripts struct {
	rdb redis.UniversalClient

	mu     sync.Mutex
	queue  []*call
	closed bool
	wake   chan struct{}
	done   chan struct{}
	trips  atomic.Int64 // round trips made (tests)
}

var _ redis.Scripter = (*Scripts)(nil)

// call is one queued script call; cmd gets its reply.
type call struct {
	name   string // evalsha, eval, evalsha_ro or eval_ro
	script string // the sha or the source
	keys   []string
	args   []any
	cmd    *redis.Cmd
	done   chan struct{}
}

// New returns a Scripts on rdb and starts its sender; Close stops it.
func New(rdb redis.UniversalClient) *Scripts {
	s := &Scripts{rdb: rdb, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.loop()
	return s
}

// Close sends what is queued and stops the sender; later calls fail with
// ErrClosed.
func (s *Scripts) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.signal()
	}
	s.mu.Unlock()
	<-s.done
}

// Eval implements redis.Scripter.
func (s *Scripts) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return s.do(ctx, "eval", script, keys, args)
}

// EvalSha implements redis.Scripter.
func (s *Scripts) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return s.do(ctx, "evalsha", sha1, keys, args)
}

// EvalRO implements redis.Scripter.
func (s *Scripts) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return s.do(ctx, "eval_ro", script, keys, args)
}

// EvalShaRO implements redis.Scripter.
func (s *Scripts) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return s.do(ctx, "evalsha_ro", sha1, keys, args)
}

// ScriptExists implements redis.Scripter (not batched).
func (s *Scripts) ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd {
	return s.rdb.ScriptExists(ctx, hashes...)
}

// ScriptLoad implements redis.Scripter (not batched).
func (s *Scripts) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	return s.rdb.ScriptLoad(ctx, script)
}

// do queues a call and waits for its reply or for ctx to end. When ctx ends
// first the script may still run, as with a call on the client itself.
func (s *Scripts) do(ctx context.Context, name, script string, keys []string, args []any) *redis.Cmd {
	c := &call{name: name, script: script, keys: keys, args: args, cmd: redis.NewCmd(ctx, name, script), done: make(chan struct{})}
	if err := ctx.Err(); err != nil {
		c.cmd.SetErr(err)
		return c.cmd
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.cmd.SetErr(ErrClosed)
		return c.cmd
	}
	s.queue = append(s.queue, c)
	s.signal()
	s.mu.Unlock()
	select {
	case <-c.done:
		return c.cmd
	case <-ctx.Done():
		cmd := redis.NewCmd(ctx, name, script) // c.cmd is the sender's to fill
		cmd.SetErr(ctx.Err())
		return cmd
	}
}

// signal wakes the sender; s.mu is held.
func (s *Scripts) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Scripts) loop() {
	defer close(s.done)
	for {
		batch, closed := s.take()
		if len(batch) > 0 {
			s.send(batch)
			continue
		}
		if closed {
			return
		}
		<-s.wake
	}
}

// take removes up to maxBatch queued calls.
func (s *Scripts) take() ([]*call, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(s.queue), maxBatch)
	batch := s.queue[:n:n]
	s.queue = s.queue[n:]
	if len(s.queue) == 0 {
		s.queue = nil
	}
	return batch, s.closed
}

// send runs the batch in one pipeline and hands each call its reply. A
// lone call goes without a pipeline.
func (s *Scripts) send(batch []*call) {
	ctx := context.Background()
	s.trips.Add(1)
	if len(batch) == 1 {
		c := batch[0]
		s.finish(c, s.run(ctx, s.rdb, c))
		return
	}
	cmds := make([]*redis.Cmd, len(batch))
	// Exec's error is the first failed call's; each call reads its own.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range batch {
			cmds[i] = s.run(ctx, p, c)
		}
		return nil
	})
	for i, c := range batch {
		s.finish(c, cmds[i])
	}
}

func (s *Scripts) run(ctx context.Context, r redis.Scripter, c *call) *redis.Cmd {
	switch c.name {
	case "eval":
		return r.Eval(ctx, c.script, c.keys, c.args...)
	case "eval_ro":
		return r.EvalRO(ctx, c.script, c.keys, c.args...)
	case "evalsha_ro":
		return r.EvalShaRO(ctx, c.script, c.keys, c.args...)
	default:
		return r.EvalSha(ctx, c.script, c.keys, c.args...)
	}
}

func (s *Scripts) finish(c *call, got *redis.Cmd) {
	c.cmd.SetVal(got.Val())
	c.cmd.SetErr(got.Err())
	close(c.done)
}
