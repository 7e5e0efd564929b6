package timers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/redis/go-redis/v9"
)

// ErrLeaseLost is returned by Confirm and Release when the claim's lease no
// longer holds: it expired and the timer was claimed again, or the timer was
// cancelled or re-armed meanwhile. Nothing was changed; the current holder
// (if any) decides the timer's fate.
var ErrLeaseLost = errors.New("timer lease lost")

// ErrInvalid marks bad input (an empty id, a zero due time, a bad config).
var ErrInvalid = errors.New("invalid timer input")

// Limits on input.
const (
	// MaxIDLen bounds a timer id.
	MaxIDLen = 512
	// MaxPayload bounds a payload.
	MaxPayload = 64 << 10
	// MaxShards bounds Config.Shards.
	MaxShards = 256
	// maxArmBatch bounds the timers per arm script call, so one call never
	// blocks Redis for long.
	maxArmBatch = 100
	// maxExpiredPerClaim bounds the expired leases one claim call returns
	// to the due set.
	maxExpiredPerClaim = 1000
)

// Config configures a Store.
type Config struct {
	// Namespace prefixes every key and the wake-up channel, e.g. "herald".
	// Letters, digits, '-', '_' and '.' only.
	Namespace string
	// Shards splits the timers over this many hash-tagged key groups (Redis
	// Cluster slots). 1 is right for a single Redis; raise it on a cluster
	// for throughput. Changing it orphans timers already armed (re-arm
	// them from the log, as after a wipe).
	Shards int
	// Lease is how long a claimed timer stays leased before it returns to
	// the due set if not confirmed or released.
	Lease time.Duration
	// WakeWithin: Arm publishes a wake-up to pollers when the new due time
	// is earlier than now+WakeWithin. Set it to the pollers' MaxSleep.
	WakeWithin time.Duration
}

// DefaultConfig returns namespace "herald", 1 shard, a 30 s lease and a 1 s
// wake-up window.
func DefaultConfig() Config {
	return Config{Namespace: "herald", Shards: 1, Lease: 30 * time.Second, WakeWithin: time.Second}
}

// Validate reports the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Namespace == "":
		return fmt.Errorf("%w: namespace: must not be empty", ErrInvalid)
	case strings.IndexFunc(c.Namespace, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0:
		return fmt.Errorf("%w: namespace %q: only letters, digits, '-', '_' and '.' are allowed", ErrInvalid, c.Namespace)
	case c.Shards < 1 || c.Shards > MaxShards:
		return fmt.Errorf("%w: shards %d: must be between 1 and %d", ErrInvalid, c.Shards, MaxShards)
	case c.Lease < 10*time.Millisecond:
		return fmt.Errorf("%w: lease %v: must be at least 10ms", ErrInvalid, c.Lease)
	case c.WakeWithin < 0:
		return fmt.Errorf("%w: wake within %v: must not be negative", ErrInvalid, c.WakeWithin)
	}
	return nil
}

// Timer is a deadline to arm.
type Timer struct {
	// ID names the timer; arming an existing id replaces it.
	ID string
	// Due is when it fires, at microsecond precision (the sorted set holds
	// it in milliseconds, rounded up, so a timer is never claimed early).
	Due time.Time
	// Payload is carried to the handler unchanged (see WithTrace).
	Payload []byte
}

// Claimed is a timer leased to the caller by Claim.
type Claimed struct {
	ID      string
	Due     time.Time // the armed due time (not a retry time)
	Payload []byte
	// Attempt counts the claims of this timer since it was armed, from 1.
	Attempt int
	// Token fences Confirm and Release to this claim.
	Token string
	// LeaseUntil is when the lease expires and the timer becomes due again.
	LeaseUntil time.Time
}

// Store keeps timers in Redis. It is safe for concurrent use.
type Store struct {
	rdb     redis.UniversalClient
	scripts redis.Scripter // arming one timer and cancelling
	clk     clock.Clock
	cfg     Config
	addr    string
	keys    [][]string // per shard, numKeys keys
	wake    string     // pub/sub channel
	rr      uint32     // claim rotation over shards, guarded by mu
	mu      sync.Mutex
	local   []chan struct{} // in-process wake-ups (pollers)
	epoch   []string        // epoch ids acknowledged per shard
}

// New returns a Store on rdb. clk gives "now" for every operation.
func New(rdb redis.UniversalClient, clk clock.Clock, cfg Config) (*Store, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: redis client: must not be nil", ErrInvalid)
	}
	if clk == nil {
		return nil, fmt.Errorf("%w: clock: must not be nil", ErrInvalid)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{rdb: rdb, scripts: rdb, clk: clk, cfg: cfg, addr: describe(rdb),
		wake: cfg.Namespace + ":timers:wake", epoch: make([]string, cfg.Shards)}
	for i := range cfg.Shards {
		tag := fmt.Sprintf("{%s:timers:%d}", cfg.Namespace, i)
		s.keys = append(s.keys, []string{tag + ":due", tag + ":leased", tag + ":payload",
			tag + ":dueat", tag + ":token", tag + ":attempts", tag + ":epoch"})
	}
	return s, nil
}

// ScriptsVia sends the calls that arm a single timer or cancel one through
// sc, a redisbatch.Batcher that lets concurrent callers share round trips,
// instead of straight to the client. It returns s.
func (s *Store) ScriptsVia(sc redis.Scripter) *Store {
	s.scripts = sc
	return s
}

// describe names the Redis address(es) of a client for error messages.
func describe(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	case *redis.Ring:
		addrs := make([]string, 0, len(c.Options().Addrs))
		for _, a := range c.Options().Addrs {
			addrs = append(addrs, a)
		}
		slices.Sort(addrs)
		return strings.Join(addrs, ",")
	}
	return "(unknown address)"
}

// Addr names the Redis address(es) the store talks to.
func (s *Store) Addr() string { return s.addr }

// Lease returns the configured lease duration.
func (s *Store) Lease() time.Duration { return s.cfg.Lease }

func (s *Store) shard(id string) int {
	if s.cfg.Shards == 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(s.cfg.Shards))
}

func validate(t Timer) error {
	switch {
	case t.ID == "":
		return fmt.Errorf("%w: timer id: must not be empty", ErrInvalid)
	case len(t.ID) > MaxIDLen:
		return fmt.Errorf("%w: timer id: longer than %d bytes", ErrInvalid, MaxIDLen)
	case t.Due.IsZero():
		return fmt.Errorf("%w: timer %s: due: must be set", ErrInvalid, t.ID)
	case len(t.Payload) > MaxPayload:
		return fmt.Errorf("%w: timer %s: payload: %d bytes, more than %d", ErrInvalid, t.ID, len(t.Payload), MaxPayload)
	}
	return nil
}

// ms is t in Unix milliseconds, rounded up, so that a timer never fires
// before its due time.
func ms(t time.Time) string {
	m := t.UnixMilli()
	if time.UnixMilli(m).Before(t) {
		m++
	}
	return strconv.FormatInt(m, 10)
}

// us is t in Unix microseconds: the stored exact deadline (exact in a Lua
// double for millennia).
func us(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// Arm upserts a timer (see the package comment for re-arm semantics). If it
// is due within Config.WakeWithin, pollers are woken.
func (s *Store) Arm(ctx context.Context, t Timer) error {
	return s.ArmMany(ctx, t)
}

// ArmMany arms timers in few round trips (pipelined scripts of up to 100
// timers per shard); use it to re-arm everything after a wipe. It is not
// atomic across timers: on error some may be armed; arming again is safe.
func (s *Store) ArmMany(ctx context.Context, ts ...Timer) error {
	if len(ts) == 0 {
		return nil
	}
	for _, t := range ts {
		if err := validate(t); err != nil {
			return err
		}
	}
	now := s.clk.Now()
	byShard := make([][]any, s.cfg.Shards)
	soon := false
	for _, t := range ts {
		i := s.shard(t.ID)
		byShard[i] = append(byShard[i], t.ID, ms(t.Due), us(t.Due), t.Payload)
		if t.Due.Before(now.Add(s.cfg.WakeWithin)) {
			soon = true
		}
	}
	var err error
	if len(ts) == 1 {
		i := s.shard(ts[0].ID)
		err = armScript.Run(ctx, s.scripts, s.keys[i], byShard[i]...).Err()
	} else if err = s.ensureScripts(ctx, armScript); err == nil {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, args := range byShard {
				for lo := 0; lo < len(args); lo += 4 * maxArmBatch {
					armScript.EvalSha(ctx, p, s.keys[i], args[lo:min(len(args), lo+4*maxArmBatch)]...)
				}
			}
			return nil
		})
	}
	if err != nil {
		if len(ts) == 1 {
			return fmt.Errorf("arm timer %s on redis %s: %w", ts[0].ID, s.addr, err)
		}
		return fmt.Errorf("arm %d timers on redis %s: %w", len(ts), s.addr, err)
	}
	if soon {
		s.notify(ctx)
	}
	return nil
}

// ensureScripts loads scripts so that pipelined EVALSHA cannot fail with
// NOSCRIPT (after a restart or SCRIPT FLUSH), on every shard's node.
func (s *Store) ensureScripts(ctx context.Context, scripts ...*redis.Script) error {
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		return c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
			for _, sc := range scripts {
				if err := sc.Load(ctx, n).Err(); err != nil {
					return fmt.Errorf("load timer script on redis %s: %w", n.Options().Addr, err)
				}
			}
			return nil
		})
	}
	for _, sc := range scripts {
		if ok, err := s.rdb.ScriptExists(ctx, sc.Hash()).Result(); err == nil && len(ok) == 1 && ok[0] {
			continue
		}
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("load timer script: %w", err)
		}
	}
	return nil
}

// notify wakes in-process pollers and, through pub/sub, those of other
// replicas. A lost wake-up only delays firing up to the pollers' MaxSleep.
func (s *Store) notify(ctx context.Context) {
	s.mu.Lock()
	for _, ch := range s.local {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	_ = s.rdb.Publish(ctx, s.wake, "1").Err()
}

// subscribeLocal registers an in-process wake-up channel.
func (s *Store) subscribeLocal() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.local = append(s.local, ch)
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		s.local = slices.DeleteFunc(s.local, func(c chan struct{}) bool { return c == ch })
		s.mu.Unlock()
	}
}

// Cancel removes a timer, leased or not. It reports whether it existed.
// A handler running for it may still Confirm or Release: both then return
// ErrLeaseLost and change nothing.
func (s *Store) Cancel(ctx context.Context, id string) (bool, error) {
	if id == "" {
		return false, fmt.Errorf("%w: timer id: must not be empty", ErrInvalid)
	}
	n, err := cancelScript.Run(ctx, s.scripts, s.keys[s.shard(id)], id).Int()
	if err != nil {
		return false, fmt.Errorf("cancel timer %s on redis %s: %w", id, s.addr, err)
	}
	return n == 1, nil
}

// Claim leases up to max due timers (due <= now), after returning expired
// leases to the due set. Each claimed timer must be Confirmed (done) or
// Released (retry) before its LeaseUntil; otherwise it becomes due again.
func (s *Store) Claim(ctx context.Context, max int) ([]Claimed, error) {
	cs, _, err := s.claim(ctx, max, 0)
	return cs, err
}

// claim also returns when to claim again (the earliest remaining due time
// less lookahead, or lease expiry) over the shards it visited (zero if
// none), so a poller needs no extra round trip to know how long to sleep. It visits every shard unless max is
// reached first; the starting shard rotates so no shard starves. With
// lookahead > 0 it also claims timers due up to now+lookahead (the caller
// waits for their deadline).
func (s *Store) claim(ctx context.Context, limit int, lookahead time.Duration) ([]Claimed, time.Time, error) {
	if limit < 1 {
		return nil, time.Time{}, fmt.Errorf("%w: claim max %d: must be at least 1", ErrInvalid, limit)
	}
	now := s.clk.Now()
	token := newToken()
	s.mu.Lock()
	start := int(s.rr % uint32(s.cfg.Shards))
	s.rr++
	s.mu.Unlock()
	var out []Claimed
	var next int64 = -1
	visitedAll := true
	for k := range s.cfg.Shards {
		if len(out) >= limit {
			visitedAll = false
			break
		}
		i := (start + k) % s.cfg.Shards
		res, err := claimScript.Run(ctx, s.rdb, s.keys[i], now.UnixMilli(), s.cfg.Lease.Milliseconds(),
			limit-len(out), token, maxExpiredPerClaim, now.Add(max(lookahead, 0)).UnixMilli()).Slice()
		if err != nil {
			return out, time.Time{}, fmt.Errorf("claim timers on redis %s: %w", s.addr, err)
		}
		cs, n, err := parseClaim(res, token, now.Add(s.cfg.Lease))
		if err != nil {
			return out, time.Time{}, fmt.Errorf("claim timers on redis %s: %w", s.addr, err)
		}
		out = append(out, cs...)
		if n >= 0 && (next < 0 || n < next) {
			next = n
		}
	}
	if !visitedAll || next < 0 {
		if !visitedAll {
			// Unvisited shards may hold due timers: claim again at once.
			return out, now, nil
		}
		return out, time.Time{}, nil
	}
	return out, time.UnixMilli(next), nil
}

func parseClaim(res []any, token string, leaseUntil time.Time) ([]Claimed, int64, error) {
	if len(res) < 1 || (len(res)-1)%4 != 0 {
		return nil, 0, fmt.Errorf("unexpected claim reply of %d elements", len(res))
	}
	next, ok := res[0].(int64)
	if !ok {
		return nil, 0, fmt.Errorf("unexpected claim reply: next is %T", res[0])
	}
	out := make([]Claimed, 0, (len(res)-1)/4)
	for j := 1; j < len(res); j += 4 {
		id, _ := res[j].(string)
		dueStr, _ := res[j+1].(string)
		payload, _ := res[j+2].(string)
		attempt, _ := res[j+3].(int64)
		due, err := strconv.ParseInt(dueStr, 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("timer %s: stored due %q: %w", id, dueStr, err)
		}
		c := Claimed{ID: id, Due: time.UnixMicro(due), Attempt: int(attempt), Token: token, LeaseUntil: leaseUntil}
		if payload != "" {
			c.Payload = []byte(payload)
		}
		out = append(out, c)
	}
	return out, next, nil
}

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Confirm deletes a claimed timer: it has fired. It returns ErrLeaseLost
// (and changes nothing) if the lease no longer holds.
func (s *Store) Confirm(ctx context.Context, c Claimed) error {
	return s.finish(ctx, []finishOp{{c: c}})[0]
}

// Release returns a claimed timer to the due set, due again after delay
// (0: at once), keeping its original Due and attempt count. It returns
// ErrLeaseLost (and changes nothing) if the lease no longer holds.
func (s *Store) Release(ctx context.Context, c Claimed, delay time.Duration) error {
	return s.finish(ctx, []finishOp{{c: c, release: true, delay: delay}})[0]
}

// finishOp is a Confirm, or a Release after delay.
type finishOp struct {
	c       Claimed
	release bool
	delay   time.Duration
}

// finish confirms or releases claimed timers in one script call per shard
// and returns one error per op: nil, ErrLeaseLost, or a Redis error.
func (s *Store) finish(ctx context.Context, ops []finishOp) []error {
	now := s.clk.Now()
	errs := make([]error, len(ops))
	byShard := make(map[int][]int, 1) // shard -> op indexes
	wake := false
	for i, op := range ops {
		sh := s.shard(op.c.ID)
		byShard[sh] = append(byShard[sh], i)
		wake = wake || op.release && op.delay < s.cfg.WakeWithin
	}
	for sh, idx := range byShard {
		args := make([]any, 0, 4*len(idx))
		for _, i := range idx {
			op, at := "c", ""
			if ops[i].release {
				op, at = "r", strconv.FormatInt(now.Add(max(ops[i].delay, 0)).UnixMilli(), 10)
			}
			args = append(args, op, ops[i].c.ID, ops[i].c.Token, at)
		}
		res, err := finishScript.Run(ctx, s.rdb, s.keys[sh], args...).Int64Slice()
		if err == nil && len(res) != len(idx) {
			err = fmt.Errorf("unexpected reply of %d elements for %d timers", len(res), len(idx))
		}
		for k, i := range idx {
			verb := "confirm"
			if ops[i].release {
				verb = "release"
			}
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("%s timer %s on redis %s: %w", verb, ops[i].c.ID, s.addr, err)
			case res[k] == 0:
				errs[i] = fmt.Errorf("%s timer %s: %w", verb, ops[i].c.ID, ErrLeaseLost)
			}
		}
	}
	if wake {
		s.notify(ctx)
	}
	return errs
}

// Next returns the earliest time at which a timer becomes claimable (a due
// time, or a lease expiry), and false when there are no timers.
func (s *Store) Next(ctx context.Context) (time.Time, bool, error) {
	var next int64 = -1
	for i := range s.cfg.Shards {
		n, err := nextScript.Run(ctx, s.rdb, s.keys[i]).Int64()
		if err != nil {
			return time.Time{}, false, fmt.Errorf("read next timer on redis %s: %w", s.addr, err)
		}
		if n >= 0 && (next < 0 || n < next) {
			next = n
		}
	}
	if next < 0 {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(next), true, nil
}

// Stats counts the timers waiting (due set) and leased, over all shards.
type Stats struct {
	Due, Leased int64
}

// Stats reads the set sizes (for metrics and tests).
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	cmds := make([][2]*redis.IntCmd, s.cfg.Shards)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range s.cfg.Shards {
			cmds[i] = [2]*redis.IntCmd{p.ZCard(ctx, s.keys[i][keyDue]), p.ZCard(ctx, s.keys[i][keyLeased])}
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("read timer stats on redis %s: %w", s.addr, err)
	}
	for _, c := range cmds {
		st.Due += c[0].Val()
		st.Leased += c[1].Val()
	}
	return st, nil
}
