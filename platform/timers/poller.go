package timers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Handler fires one claimed timer. Return nil when its effect is durable
// (the timer is then confirmed and deleted); an error releases it for a
// retry with backoff. It must be idempotent: a timer can fire more than
// once (see the package comment). ctx ends before the lease does. Its
// error is logged with the timer id: keep patient data out of it.
type Handler func(ctx context.Context, c Claimed) error

// Hooks are optional observation points (metrics, tests). Each may be nil.
// They run on the poller's goroutines and must not block.
type Hooks struct {
	// Fired is called after a handler ran and its timer was confirmed or
	// released: lateness is handler start minus Due; err is the handler's
	// error (nil: confirmed).
	Fired func(c Claimed, lateness time.Duration, err error)
	// Error is called for a failed Redis operation of the poll loop, a
	// failed Confirm/Release, or a failed re-arm after a lost epoch.
	Error func(err error)
	// Sleeping is called when the poller goes to sleep until at the latest
	// the given time (it may wake earlier).
	Sleeping func(until time.Time)
}

// PollerConfig configures a Poller. Zero values take the defaults.
type PollerConfig struct {
	// Batch bounds the timers claimed per round trip (default 100).
	Batch int
	// Concurrency bounds handlers running at once (default 16). Claimed
	// timers not yet finished (waiting for their deadline, for a handler
	// slot, or running) are bounded by Concurrency+Batch, so a claimed
	// timer waits little while its lease runs; a handler whose lease is
	// about to end is not started (the timer is released instead).
	Concurrency int
	// MaxSleep caps a sleep, so timers armed by replicas whose wake-up
	// message was lost are still seen (default 1 s).
	MaxSleep time.Duration
	// RetryMin and RetryMax bound the exponential delay before a timer
	// whose handler failed is due again (defaults 500 ms and 30 s).
	RetryMin, RetryMax time.Duration
	// Lookahead claims timers this long before they are due; the poller
	// then waits for each deadline in-process, which takes the Redis round
	// trip off the firing path (default 100 ms, at most a tenth of the
	// lease; negative: off). A handler
	// never runs before Due. A timer cancelled or re-armed within Lookahead
	// of its deadline may still fire, as it may when cancelled while firing;
	// handlers check their own state anyway.
	Lookahead time.Duration
	// HandlerTimeout bounds a handler (default 90% of the store's lease).
	HandlerTimeout time.Duration
	// OnEpochLost, when set, is called when CheckEpoch reports Lost (at
	// start-up, then every EpochEvery): it must re-arm every open timer.
	// On nil the poller calls Rearmed; on error it retries with backoff.
	// Then do not also call CheckEpoch on the same Store yourself.
	OnEpochLost func(ctx context.Context) error
	// EpochEvery is how often the epoch is checked (default 10 s).
	EpochEvery time.Duration
	// Logger receives warnings (default: discard). Timer ids and errors
	// are logged, never payloads.
	Logger *slog.Logger
	// Hooks are optional observation points.
	Hooks Hooks
}

// Redis error backoff of the poll loop.
const (
	errBackoffMin = 100 * time.Millisecond
	errBackoffMax = 5 * time.Second
	finishTimeout = 5 * time.Second
)

// Poller fires the timers of a Store. Any number of pollers (in one process
// or in several replicas) may share a Store's Redis.
type Poller struct {
	s   *Store
	cfg PollerConfig
	log *slog.Logger
}

// NewPoller returns a poller of s with cfg (zero fields take defaults).
func NewPoller(s *Store, cfg PollerConfig) (*Poller, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: store: must not be nil", ErrInvalid)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if cfg.Batch == 0 {
		cfg.Batch = 100
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 16
	}
	def(&cfg.MaxSleep, time.Second)
	def(&cfg.RetryMin, 500*time.Millisecond)
	def(&cfg.RetryMax, 30*time.Second)
	def(&cfg.HandlerTimeout, s.cfg.Lease-s.cfg.Lease/10)
	def(&cfg.EpochEvery, 10*time.Second)
	def(&cfg.Lookahead, min(100*time.Millisecond, s.cfg.Lease/10))
	cfg.Lookahead = max(cfg.Lookahead, 0)
	switch {
	case cfg.Batch < 1:
		return nil, fmt.Errorf("%w: poller batch %d: must be positive", ErrInvalid, cfg.Batch)
	case cfg.Concurrency < 1:
		return nil, fmt.Errorf("%w: poller concurrency %d: must be positive", ErrInvalid, cfg.Concurrency)
	case cfg.MaxSleep < time.Millisecond:
		return nil, fmt.Errorf("%w: poller max sleep %v: must be at least 1ms", ErrInvalid, cfg.MaxSleep)
	case cfg.RetryMin <= 0 || cfg.RetryMax < cfg.RetryMin:
		return nil, fmt.Errorf("%w: poller retry min %v, max %v: need 0 < min <= max", ErrInvalid, cfg.RetryMin, cfg.RetryMax)
	case cfg.HandlerTimeout <= 0 || cfg.HandlerTimeout > s.cfg.Lease:
		return nil, fmt.Errorf("%w: poller handler timeout %v: must be positive and at most the lease %v", ErrInvalid, cfg.HandlerTimeout, s.cfg.Lease)
	case cfg.Lookahead >= s.cfg.Lease/2:
		return nil, fmt.Errorf("%w: poller lookahead %v: must be under half the lease %v", ErrInvalid, cfg.Lookahead, s.cfg.Lease)
	case cfg.EpochEvery <= 0:
		return nil, fmt.Errorf("%w: poller epoch every %v: must be positive", ErrInvalid, cfg.EpochEvery)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Poller{s: s, cfg: cfg, log: log}, nil
}

// Run claims and fires due timers until ctx is done, then waits for the
// handlers in flight (their timers are confirmed or released) and returns
// nil. Redis errors are logged with the address and retried with backoff;
// Run never gives up on them.
func (p *Poller) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return fmt.Errorf("%w: poller handler: must not be nil", ErrInvalid)
	}
	local, unsub := p.s.subscribeLocal()
	defer unsub()
	remote := make(chan struct{}, 1)
	ps := p.s.rdb.Subscribe(ctx, p.s.wake)
	var fwd sync.WaitGroup
	fwd.Go(func() {
		for range ps.Channel() {
			select {
			case remote <- struct{}{}:
			default:
			}
		}
	})
	defer func() { _ = ps.Close(); fwd.Wait() }()

	slots := make(chan struct{}, p.cfg.Concurrency)
	inflight := make(chan struct{}, p.cfg.Concurrency+p.cfg.Batch)
	fin := &finisher{s: p.s, reqs: make(chan finishReq, p.cfg.Concurrency+p.cfg.Batch)}
	var finishing sync.WaitGroup
	// Confirms and releases outlive ctx (shutdown), so nothing waits out a lease.
	finishing.Go(func() { fin.run(context.WithoutCancel(ctx)) })
	defer func() { close(fin.reqs); finishing.Wait() }()
	var running sync.WaitGroup
	defer running.Wait() // before the finisher stops
	clk := p.s.clk
	var errDelay, epochDelay time.Duration
	var lastEpoch time.Time
	epochChecked := false

	for ctx.Err() == nil {
		if p.cfg.OnEpochLost != nil && (!epochChecked || clk.Now().Sub(lastEpoch) >= p.cfg.EpochEvery) {
			if err := p.checkEpoch(ctx); err != nil {
				epochDelay = p.failed(ctx, err, epochDelay)
				continue
			}
			epochChecked, lastEpoch, epochDelay = true, clk.Now(), 0
		}

		// Reserve in-flight room first: claim only what can start soon.
		select {
		case inflight <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		free := 1
	reserve:
		for free < p.cfg.Batch {
			select {
			case inflight <- struct{}{}:
				free++
			default:
				break reserve
			}
		}
		cs, next, err := p.s.claim(ctx, free, p.cfg.Lookahead)
		for range free - len(cs) {
			<-inflight
		}
		for _, c := range cs {
			running.Go(func() {
				defer func() { <-inflight }()
				p.fire(ctx, h, c, slots, fin)
			})
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			errDelay = p.failed(ctx, err, errDelay)
			continue
		}
		errDelay = 0
		if len(cs) == free {
			continue // more may be due
		}
		now := clk.Now()
		d := p.cfg.MaxSleep
		if !next.IsZero() {
			d = min(d, next.Sub(now))
		}
		if d <= 0 {
			if len(cs) > 0 {
				continue
			}
			d = time.Millisecond // never spin, whatever the clocks say
		}
		wakeAt := clk.After(d)
		if f := p.cfg.Hooks.Sleeping; f != nil {
			f(now.Add(d))
		}
		select {
		case <-wakeAt:
		case <-local:
		case <-remote:
		case <-ctx.Done():
		}
	}
	return nil
}

// failed reports a poll-loop error and sleeps with exponential backoff;
// it returns the next delay.
func (p *Poller) failed(ctx context.Context, err error, delay time.Duration) time.Duration {
	delay = min(max(2*delay, errBackoffMin), errBackoffMax)
	retry := p.s.clk.After(delay)
	p.log.WarnContext(ctx, "timer poller: poll round failed; retrying", "error", err.Error(), "retry_in", delay.String())
	if f := p.cfg.Hooks.Error; f != nil {
		f(err)
	}
	select {
	case <-retry:
	case <-ctx.Done():
	}
	return delay
}

func (p *Poller) checkEpoch(ctx context.Context) error {
	e, err := p.s.CheckEpoch(ctx)
	if err != nil || !e.Lost {
		return err
	}
	p.log.WarnContext(ctx, "timer store lost its data (epoch key missing or changed); re-arming", "redis", p.s.addr)
	if err := p.cfg.OnEpochLost(ctx); err != nil {
		return fmt.Errorf("re-arm timers after lost epoch: %w", err)
	}
	return p.s.Rearmed(ctx, e)
}

// fire waits for c's deadline (claimed ahead by Lookahead) and a handler
// slot, runs the handler, then confirms or releases it.
func (p *Poller) fire(ctx context.Context, h Handler, c Claimed, slots chan struct{}, fin *finisher) {
	giveBack := func() {
		_ = fin.do(finishOp{c: c, release: true}) // leave it to another claim now
	}
	if wait := c.Due.Sub(p.s.clk.Now()); wait > 0 {
		select {
		case <-p.s.clk.After(wait):
		case <-ctx.Done():
			giveBack()
			return
		}
	}
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	case <-ctx.Done():
		giveBack()
		return
	}
	start := p.s.clk.Now()
	// The handler's context ends a tenth of the lease before the lease
	// does, so (with synced clocks) a handler is over before another
	// replica can claim the timer again.
	timeout := min(p.cfg.HandlerTimeout, c.LeaseUntil.Sub(start)-p.s.cfg.Lease/10)
	if timeout <= 0 {
		giveBack()
		return
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	err := call(hctx, h, c)
	cancel()
	var ferr error
	if err == nil {
		ferr = fin.do(finishOp{c: c})
	} else {
		delay := p.retryDelay(c.Attempt)
		if ctx.Err() != nil {
			delay = 0 // shutting down: let another replica take it now
		}
		p.log.WarnContext(ctx, "timer handler failed; released for retry", "timer", c.ID,
			"attempt", c.Attempt, "retry_in", delay.String(), "error", err.Error())
		ferr = fin.do(finishOp{c: c, release: true, delay: delay})
	}
	if ferr != nil {
		if errors.Is(ferr, ErrLeaseLost) {
			p.log.WarnContext(ctx, "timer lease lost before it was finished (expired, cancelled or re-armed)", "timer", c.ID)
		} else {
			p.log.WarnContext(ctx, "timer poller: finishing a timer failed; it fires again after its lease", "timer", c.ID, "error", ferr.Error())
		}
		if f := p.cfg.Hooks.Error; f != nil {
			f(ferr)
		}
	}
	if f := p.cfg.Hooks.Fired; f != nil {
		f(c, start.Sub(c.Due), err)
	}
}

// call runs h, turning a panic into an error.
func call(ctx context.Context, h Handler, c Claimed) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("timer %s handler panicked: %v", c.ID, r)
		}
	}()
	return h(ctx, c)
}

func (p *Poller) retryDelay(attempt int) time.Duration {
	d := p.cfg.RetryMin
	for i := 1; i < attempt && d < p.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, p.cfg.RetryMax)
}

// maxFinishBatch bounds the confirms and releases sent in one script call.
const maxFinishBatch = 256

// finisher sends the confirms and releases of a poller's handlers to Redis,
// coalescing those that queue up while a call is in flight into one script
// call (no waiting to fill a batch), which keeps Redis round trips off each
// handler's back under load.
type finisher struct {
	s    *Store
	reqs chan finishReq
}

type finishReq struct {
	op   finishOp
	done chan error
}

// do queues op and waits for its result.
func (f *finisher) do(op finishOp) error {
	done := make(chan error, 1)
	f.reqs <- finishReq{op: op, done: done}
	return <-done
}

// run serves requests until reqs is closed.
func (f *finisher) run(ctx context.Context) {
	for r := range f.reqs {
		batch := []finishReq{r}
	drain:
		for len(batch) < maxFinishBatch {
			select {
			case more, ok := <-f.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		ops := make([]finishOp, len(batch))
		for i, b := range batch {
			ops[i] = b.op
		}
		fctx, cancel := context.WithTimeout(ctx, finishTimeout)
		errs := f.s.finish(fctx, ops)
		cancel()
		for i, b := range batch {
			b.done <- errs[i]
		}
	}
}
