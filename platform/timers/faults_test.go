package timers

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// A handler that outlives its lease (stuck past its context, as a handler
// blocked in a call that ignores it would be): the timer's lease expires,
// the timer fires again on another replica and is confirmed there, and the
// stuck handler's late confirm is refused (ErrLeaseLost), so it cannot
// delete or confirm a timer that is no longer its own.
func TestAHandlerThatOutlivesItsLeaseIsFencedOffAndTheTimerFiresAgain(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb := newStore(t, func(c *Config) { c.Lease = time.Minute })
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0}))

	stuck, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	fired := make(chan int, 4)
	h := func(_ context.Context, c Claimed) error {
		fired <- c.Attempt
		if c.Attempt == 1 {
			close(stuck)
			<-release // ignores its context
		}
		return nil
	}
	errs := map[string]chan error{"a": make(chan error, 4), "b": make(chan error, 4)}
	for name, st := range map[string]*Store{"a": s, "b": replica(t, rdb, clk, s.cfg)} {
		p, err := NewPoller(st, PollerConfig{Hooks: Hooks{Error: func(err error) { errs[name] <- err }}})
		require.NoError(t, err)
		runPoller(t, p, h)
	}
	select {
	case <-stuck:
	case <-time.After(20 * time.Second):
		t.Fatal("the timer never fired")
	}
	require.Equal(t, 1, <-fired)

	// when the lease runs out while the first handler is still stuck
	clk.Advance(time.Minute + time.Second)
	select {
	case n := <-fired:
		require.Equal(t, 2, n, "the timer fires again once its lease expired")
	case <-time.After(20 * time.Second):
		t.Fatal("the timer did not fire again after its lease expired")
	}
	eventually(t, func() bool {
		st, err := s.Stats(ctx)
		return err == nil && st == Stats{}
	}, "the second fire's confirm removes the timer")

	// then the stuck handler's confirm is refused
	close(release)
	var lost error
	eventually(t, func() bool {
		for _, ch := range errs {
			select {
			case err := <-ch:
				lost = err
				return true
			default:
			}
		}
		return false
	}, "no report of the stuck handler's confirm")
	require.ErrorIs(t, lost, ErrLeaseLost)
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, Stats{}, st, "the late confirm changed nothing")
	select {
	case n := <-fired:
		t.Fatalf("a third fire (attempt %d)", n)
	default:
	}
}

// proxy forwards TCP connections to a Redis server until cut: then it
// drops every connection and refuses new ones, until restored.
type proxy struct {
	target string
	addr   string
	mu     sync.Mutex
	lis    net.Listener
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{target: target}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = lis.Addr().String()
	p.serve(lis)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) serve(lis net.Listener) {
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
}

// cut closes the listener and every connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		_ = p.lis.Close()
		p.lis = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// restore listens again on the same address.
func (p *proxy) restore(t *testing.T) {
	t.Helper()
	lis, err := net.Listen("tcp", p.addr)
	require.NoError(t, err)
	p.serve(lis)
}

// Redis cannot be reached when a handler that succeeded confirms its timer:
// the confirm fails and is reported, and the timer is not lost: once Redis
// is back and the lease has expired, it fires again.
func TestAFailedConfirmLeavesTheTimerToFireAgainAfterItsLease(t *testing.T) {
	ctx := context.Background()
	_, clk, rdb := newStore(t)
	px := newProxy(t, rdb.Options().Addr)
	opts := *rdb.Options()
	opts.Addr, opts.MaxRetries = px.addr, 1
	viaProxy := redis.NewClient(&opts)
	t.Cleanup(func() { _ = viaProxy.Close() })
	cfg := DefaultConfig()
	cfg.Namespace, cfg.Lease = "test", time.Minute
	s, err := New(viaProxy, clk, cfg)
	require.NoError(t, err)
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0}))

	fired := make(chan int, 4)
	errs := make(chan error, 16)
	p, err := NewPoller(s, PollerConfig{Hooks: Hooks{Error: func(err error) { errs <- err }}})
	require.NoError(t, err)
	runPoller(t, p, func(_ context.Context, c Claimed) error {
		if c.Attempt == 1 {
			px.cut() // Redis is gone when the handler's effect is durable
		}
		fired <- c.Attempt
		return nil
	})
	select {
	case n := <-fired:
		require.Equal(t, 1, n)
	case <-time.After(20 * time.Second):
		t.Fatal("the timer never fired")
	}
	select {
	case err := <-errs:
		require.NotErrorIs(t, err, ErrLeaseLost, "the confirm failed on the way to Redis, not on a lost lease")
	case <-time.After(20 * time.Second):
		t.Fatal("the failed confirm was not reported")
	}

	// Redis is back: the timer is still leased (the confirm never arrived)
	// and fires again once the lease has expired.
	px.restore(t)
	direct := replica(t, rdb, clk, cfg)
	st, err := direct.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, Stats{Leased: 1}, st, "the timer is kept, leased to the handler that could not confirm it")
	clk.Advance(time.Minute + time.Second)
	eventually(t, func() bool {
		select {
		case n := <-fired:
			require.Equal(t, 2, n)
			return true
		default:
			clk.Advance(time.Second) // wake the poller from its error backoff
			return false
		}
	}, "the timer did not fire again after its lease expired")
	eventually(t, func() bool {
		st, err := direct.Stats(ctx)
		return err == nil && st == Stats{}
	}, "the second fire's confirm removes the timer")
	for {
		select {
		case err := <-errs:
			if errors.Is(err, ErrLeaseLost) {
				t.Fatalf("a lease-lost report: %v", err)
			}
			continue
		default:
		}
		break
	}
}
