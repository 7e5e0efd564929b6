// Package redisstore mirrors the alert lifecycle projection into Redis, so
// that any replica can answer queries and validate commands: one hash per
// alert (the AlertState protobuf and the log offset it reflects), indexes
// for listing, an epoch key that detects a wiped Redis, a restore lock, the
// single-use register of acknowledge-link tokens, and a pub/sub channel of
// changes for WatchAlerts.
//
// Every key shares one hash tag ("{<namespace>:ack}"), so the multi-key
// scripts that check the epoch atomically with a read or write work on Redis
// Cluster (the projection then lives in one slot; the timers, which carry
// the load, are sharded by platform/timers).
//
// Redis is a cache: everything here is rebuilt from the compacted state
// topic when the epoch key is missing. It keeps open alerts: with
// RetainClosed, a closed or cancelled alert's state expires that long after
// its last event (the console's reporting store keeps the history), leaving
// a small "retired" marker so that a late event for it is refused
// (app.ErrRetired) rather than folded into a new, empty state.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// Store is the Redis projection store. It is safe for concurrent use.
type Store struct {
	rdb     redis.UniversalClient
	scripts redis.Scripter // the per-event reads and writes
	addr    string
	tag     string
	// retain is how long a terminal state is kept after its last event
	// (0: for ever); now is the clock that measures it.
	retain time.Duration
	now    func() time.Time
}

// New returns a store under namespace ns (e.g. "herald").
func New(rdb redis.UniversalClient, ns string) *Store {
	addr := ""
	if c, ok := rdb.(*redis.Client); ok {
		addr = c.Options().Addr
	}
	return &Store{rdb: rdb, scripts: rdb, addr: addr, tag: "{" + ns + ":ack}", now: time.Now}
}

// RetainClosed makes closed and cancelled alerts' states expire d after
// their last event (d <= 0: never), measured by now (nil: time.Now). It
// returns s.
func (s *Store) RetainClosed(d time.Duration, now func() time.Time) *Store {
	s.retain = d
	if now != nil {
		s.now = now
	}
	return s
}

// ScriptsVia sends the consumer's per-event script calls (Get and Put)
// through sc, a redisbatch.Batcher that lets the calls of concurrent lanes
// share round trips, instead of straight to the client. It returns s.
func (s *Store) ScriptsVia(sc redis.Scripter) *Store {
	s.scripts = sc
	return s
}

func (s *Store) epochKey() string          { return s.tag + ":epoch" }
func (s *Store) lockKey() string           { return s.tag + ":restore-lock" }
func (s *Store) allKey() string            { return s.tag + ":alerts" }
func (s *Store) openKey() string           { return s.tag + ":open" }
func (s *Store) deadlinesKey() string      { return s.tag + ":deadlines" }
func (s *Store) tenantKey(t string) string { return s.tag + ":tenant:" + t }

// orderKey is the deadline-order index of the open alerts of trust t (""
// for every trust): score lifecycle.DeadlineOrder, member the alert id.
func (s *Store) orderKey(t string) string {
	if t == "" {
		return s.tag + ":bydeadline"
	}
	return s.tag + ":bydeadline:tenant:" + t
}

// orderBuiltKey marks the deadline-order index as built for the states
// stored before it existed (BuildDeadlineOrder).
func (s *Store) orderBuiltKey() string     { return s.tag + ":bydeadline:built" }
func (s *Store) stateKey(id string) string { return s.tag + ":state:" + id }
func (s *Store) tokenKey(id string) string { return s.tag + ":token:" + id }

// retiredKey marks an alert whose terminal state expired.
func (s *Store) retiredKey(id string) string { return s.tag + ":retired:" + id }

// Channel is the pub/sub channel of changed states.
func (s *Store) Channel() string { return s.tag + ":changes" }

const (
	noEpoch = "NOEPOCH"
	retired = "RETIRED"
)

// getScript: KEYS epoch, state, retired. Returns the state bytes or false;
// an error reply NOEPOCH when the epoch is missing, RETIRED when the state
// expired after the alert closed.
var getScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOEPOCH') end
local d = redis.call('HGET', KEYS[2], 'd')
if not d and redis.call('EXISTS', KEYS[3]) == 1 then return redis.error_reply('RETIRED') end
return d
`)

// putScript: KEYS epoch, state, all, open, tenant, deadlines, retired,
// order (all trusts), order (the alert's trust); ARGV check-epoch (0/1),
// offset, data, score, open (0/1), alert id, changes channel ("" for
// none), change, next deadline ms ("" for none), expiry ms ("" for none),
// deadline-order score ("" for a terminal alert). Stores if the offset is
// newer, indexes the alert by its next deadline (for the overdue watchdog)
// and in the worklist's deadline order (open alerts only), makes a
// terminal state expire (marking the alert retired), and then publishes
// the change.
var putScript = redis.NewScript(`
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOEPOCH') end
local cur = redis.call('HGET', KEYS[2], 'o')
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'o', ARGV[2], 'd', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[6])
if ARGV[5] == '1' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[6]) else redis.call('ZREM', KEYS[4], ARGV[6]) end
if ARGV[9] ~= '' then redis.call('ZADD', KEYS[6], ARGV[9], ARGV[6]) else redis.call('ZREM', KEYS[6], ARGV[6]) end
if ARGV[11] ~= '' then
  redis.call('ZADD', KEYS[8], ARGV[11], ARGV[6])
  redis.call('ZADD', KEYS[9], ARGV[11], ARGV[6])
else
  redis.call('ZREM', KEYS[8], ARGV[6])
  redis.call('ZREM', KEYS[9], ARGV[6])
end
if ARGV[10] ~= '' then
  redis.call('SET', KEYS[7], '1')
  redis.call('PEXPIRE', KEYS[2], ARGV[10])
end
if ARGV[7] ~= '' then redis.call('PUBLISH', ARGV[7], ARGV[8]) end
return 1
`)

func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), noEpoch) {
		return fmt.Errorf("%s: %w: %w", op, app.ErrProjectionLost, fault.ErrUnavailable)
	}
	if strings.Contains(err.Error(), retired) {
		return fmt.Errorf("%s: %w", op, app.ErrRetired)
	}
	return fault.Unavailable(fmt.Sprintf("%s on redis %s: %v", op, s.addr, err))
}

// Get implements app.StateStore.
func (s *Store) Get(ctx context.Context, alertID string) (*lifecycle.State, error) {
	v, err := getScript.Run(ctx, s.scripts, []string{s.epochKey(), s.stateKey(alertID), s.retiredKey(alertID)}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, s.wrap("read alert state", err)
	}
	str, ok := v.(string)
	if !ok {
		return nil, nil
	}
	return decode(alertID, []byte(str))
}

func decode(alertID string, b []byte) (*lifecycle.State, error) {
	st := &lifecycle.State{}
	if err := proto.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("decode state of alert %s: %w", alertID, err)
	}
	return st, nil
}

// Put implements app.StateStore. The change is published in the same
// script, so storing and announcing take one round trip.
func (s *Store) Put(ctx context.Context, st *lifecycle.State) (bool, error) {
	n, err := s.put(ctx, s.scripts, st, true).Int()
	if err != nil {
		return false, s.wrap("store alert state", err)
	}
	return n == 1, nil
}

// put stores st with the put script; with checkEpoch (live changes, not a
// restore) it also checks the epoch and publishes the change.
func (s *Store) put(ctx context.Context, c redis.Scripter, st *lifecycle.State, checkEpoch bool) *redis.Cmd {
	fail := func(err error) *redis.Cmd {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd
	}
	b, err := proto.Marshal(st)
	if err != nil {
		return fail(fmt.Errorf("encode state of alert %s: %w", st.GetAlertId(), err))
	}
	check, open := "0", "0"
	channel, change := "", []byte(nil)
	if checkEpoch {
		check = "1"
		channel = s.Channel()
		if change, err = encodeChange(st); err != nil {
			return fail(err)
		}
	}
	if !lifecycle.IsTerminal(st) {
		open = "1"
	}
	var score int64
	if st.GetRaisedAt() != nil {
		score = st.GetRaisedAt().AsTime().UnixMilli()
	}
	deadline := ""
	if d, ok := lifecycle.NextDeadline(st); ok {
		deadline = strconv.FormatInt(d.UnixMilli(), 10)
	}
	order := ""
	if ms, ok := lifecycle.DeadlineOrder(st); ok {
		order = strconv.FormatInt(ms, 10)
	}
	return putScript.Run(ctx, c,
		[]string{s.epochKey(), s.stateKey(st.GetAlertId()), s.allKey(), s.openKey(), s.tenantKey(st.GetTenant()), s.deadlinesKey(), s.retiredKey(st.GetAlertId()),
			s.orderKey(""), s.orderKey(st.GetTenant())},
		check, strconv.FormatInt(st.GetOffset(), 10), b, score, open, st.GetAlertId(), channel, change, deadline, s.expiry(st), order)
}

// expiry is the expiry (ms) of a terminal state: RetainClosed after its
// last event, at least 1 ms (a state restored after its retention expires
// at once); "" for an open alert or without RetainClosed.
func (s *Store) expiry(st *lifecycle.State) string {
	if s.retain <= 0 || !lifecycle.IsTerminal(st) {
		return ""
	}
	last := st.GetUpdatedAt().AsTime()
	if st.GetUpdatedAt() == nil {
		last = s.now()
	}
	ttl := max(s.retain-s.now().Sub(last), time.Millisecond)
	return strconv.FormatInt(ttl.Milliseconds(), 10)
}

// DueBefore implements app.DeadlineIndex: up to n alerts whose next
// deadline, as stored with their state, is before t, earliest first.
func (s *Store) DueBefore(ctx context.Context, t time.Time, n int) ([]string, error) {
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.deadlinesKey(), ByScore: true,
		Start: "-inf", Stop: "(" + strconv.FormatInt(t.UnixMilli(), 10), Count: int64(n)}).Result()
	if err != nil {
		return nil, s.wrap("list alerts by deadline", err)
	}
	return ids, nil
}

// Ready implements app.RecoveryStore.
func (s *Store) Ready(ctx context.Context) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.epochKey()).Result()
	if err != nil {
		return false, s.wrap("check projection epoch", err)
	}
	return n == 1, nil
}

// TryLock implements app.RecoveryStore.
func (s *Store) TryLock(ctx context.Context, owner string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.lockKey(), owner, ttl).Result()
	if err != nil {
		return false, s.wrap("take restore lock", err)
	}
	return ok, nil
}

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Unlock implements app.RecoveryStore.
func (s *Store) Unlock(ctx context.Context, owner string) error {
	return s.wrap("release restore lock", unlockScript.Run(ctx, s.rdb, []string{s.lockKey()}, owner).Err())
}

// Restore implements app.RecoveryStore.
func (s *Store) Restore(ctx context.Context, states []*lifecycle.State) error {
	pipe := s.rdb.Pipeline()
	for _, st := range states {
		s.put(ctx, pipe, st, false)
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		// A script not yet loaded on this server: load it and try again.
		if strings.Contains(err.Error(), "NOSCRIPT") {
			if lerr := putScript.Load(ctx, s.rdb).Err(); lerr != nil {
				return s.wrap("load restore script", lerr)
			}
			return s.Restore(ctx, states)
		}
		return s.wrap("restore alert states", err)
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return s.wrap("restore alert states", c.Err())
		}
	}
	return nil
}

// MarkReady implements app.RecoveryStore.
func (s *Store) MarkReady(ctx context.Context) error {
	return s.wrap("recreate projection epoch", s.rdb.Set(ctx, s.epochKey(), strconv.FormatInt(time.Now().UnixNano(), 36), 0).Err())
}

// ForEachOpen implements app.RecoveryStore.
func (s *Store) ForEachOpen(ctx context.Context, fn func(*lifecycle.State) error) error {
	const page = 1000
	for start := int64(0); ; start += page {
		ids, err := s.rdb.ZRange(ctx, s.openKey(), start, start+page-1).Result()
		if err != nil {
			return s.wrap("list open alerts", err)
		}
		states, err := s.load(ctx, ids)
		if err != nil {
			return err
		}
		for _, st := range states {
			if err := fn(st); err != nil {
				return err
			}
		}
		if len(ids) < page {
			return nil
		}
	}
}

// load reads the states of ids (skipping any that vanished).
func (s *Store) load(ctx context.Context, ids []string) ([]*lifecycle.State, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, s.stateKey(id), "d")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.wrap("read alert states", err)
	}
	out := make([]*lifecycle.State, 0, len(ids))
	for i, c := range cmds {
		b, err := c.Bytes()
		if err != nil {
			continue
		}
		st, err := decode(ids[i], b)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// encodeChange is the change published for st: the state without its
// timeline (watchers need the state, and the timeline is most of the
// bytes). It leaves st as it was.
func encodeChange(st *lifecycle.State) ([]byte, error) {
	timeline := st.Timeline
	st.Timeline = nil
	b, err := proto.Marshal(st)
	st.Timeline = timeline
	if err != nil {
		return nil, fmt.Errorf("encode change of alert %s: %w", st.GetAlertId(), err)
	}
	return b, nil
}

// Subscribe delivers every published change to fn until ctx ends; ready is
// called once Redis has confirmed the subscription (app.Subscribe).
func (s *Store) Subscribe(ctx context.Context, fn func(*lifecycle.State), ready func()) error {
	ps := s.rdb.Subscribe(ctx, s.Channel())
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return s.wrap("subscribe to alert changes", err)
	}
	ready()
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			st, err := decode("", []byte(m.Payload))
			if err != nil {
				continue
			}
			fn(st)
		}
	}
}

// ClaimToken records that an acknowledge-link token was used; it reports
// false when it had been used already. The record outlives the token's
// expiry by a day.
func (s *Store) ClaimToken(ctx context.Context, tokenID string, until time.Time) (bool, error) {
	ttl := time.Until(until) + 24*time.Hour
	if ttl < time.Hour {
		ttl = time.Hour
	}
	ok, err := s.rdb.SetNX(ctx, s.tokenKey(tokenID), "1", ttl).Result()
	if err != nil {
		return false, s.wrap("record link token use", err)
	}
	return ok, nil
}

// ReleaseToken forgets a token use whose acknowledgement could not be
// recorded (so the person can try again).
func (s *Store) ReleaseToken(ctx context.Context, tokenID string) error {
	return s.wrap("release link token", s.rdb.Del(ctx, s.tokenKey(tokenID)).Err())
}

// Scan implements app.Lister: up to n states of tenant ("" for all), newest
// raised first, after cursor ("" to start). It returns the cursor of the last
// state returned, or "" when there are no more.
func (s *Store) Scan(ctx context.Context, tenant, cursor string, n int) ([]*lifecycle.State, string, error) {
	key := s.allKey()
	if tenant != "" {
		key = s.tenantKey(tenant)
	}
	max := "+inf"
	var curScore float64
	curID := ""
	if cursor != "" {
		sc, id, ok := strings.Cut(cursor, ":")
		f, err := strconv.ParseFloat(sc, 64)
		if !ok || err != nil || id == "" {
			return nil, "", fault.Invalid("list alerts", fault.Violation{Field: "page_token", Problem: "is not a token this service issued"})
		}
		curScore, curID, max = f, id, sc
	}
	var ids []string
	var last redis.Z
	for offset := int64(0); len(ids) < n; {
		zs, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: key, Start: max, Stop: "-inf", ByScore: true, Rev: true, Offset: offset, Count: int64(n),
		}).Result()
		if err != nil {
			return nil, "", s.wrap("list alerts", err)
		}
		for _, z := range zs {
			id := z.Member.(string)
			if cursor != "" && z.Score == curScore && id >= curID {
				continue
			}
			ids = append(ids, id)
			last = z
			if len(ids) == n {
				break
			}
		}
		if len(zs) < n {
			break
		}
		offset += int64(len(zs))
	}
	states, err := s.load(ctx, ids)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ids) == n {
		next = strconv.FormatFloat(last.Score, 'f', 0, 64) + ":" + last.Member.(string)
	}
	return states, next, nil
}

// ScanByDeadline implements app.DeadlineLister: up to n open states of
// tenant ("" for all) in the worklist's deadline order (soonest deadline
// first, so overdue first; no deadline last), after cursor ("" to start,
// else "<order score>:<alert id>" as returned). It reads the order index
// (a sorted set kept by the put script), never every alert. It returns the
// cursor of the last state returned, or "" when there are no more.
func (s *Store) ScanByDeadline(ctx context.Context, tenant, cursor string, n int) ([]*lifecycle.State, string, error) {
	key := s.orderKey(tenant)
	min := "-inf"
	var curScore float64
	curID := ""
	if cursor != "" {
		sc, id, ok := strings.Cut(cursor, ":")
		f, err := strconv.ParseFloat(sc, 64)
		if !ok || err != nil || id == "" {
			return nil, "", fault.Invalid("list alerts", fault.Violation{Field: "page_token", Problem: "is not a token this service issued for this order"})
		}
		curScore, curID, min = f, id, sc
	}
	var zs []redis.Z
	for offset := int64(0); len(zs) < n; {
		got, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: key, Start: min, Stop: "+inf", ByScore: true, Offset: offset, Count: int64(n),
		}).Result()
		if err != nil {
			return nil, "", s.wrap("list alerts by deadline", err)
		}
		for _, z := range got {
			// Members of one score are in id order: skip up to the cursor.
			if cursor != "" && z.Score == curScore && z.Member.(string) <= curID {
				continue
			}
			zs = append(zs, z)
			if len(zs) == n {
				break
			}
		}
		if len(got) < n {
			break
		}
		offset += int64(len(got))
	}
	ids := make([]string, len(zs))
	for i, z := range zs {
		ids[i] = z.Member.(string)
	}
	states, err := s.load(ctx, ids)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(zs) == n {
		last := zs[len(zs)-1]
		next = strconv.FormatFloat(last.Score, 'f', 0, 64) + ":" + last.Member.(string)
	}
	return states, next, nil
}

// BuildDeadlineOrder implements app.OrderBuilder: it adds states (the open
// alerts, as Recover reads them) to the deadline-order index once, for a
// projection stored before the index existed, and marks it built. A state
// already indexed keeps its score (ZADD NX: a change stored meanwhile wins).
func (s *Store) BuildDeadlineOrder(ctx context.Context, states []*lifecycle.State) error {
	built, err := s.rdb.Exists(ctx, s.orderBuiltKey()).Result()
	if err != nil {
		return s.wrap("check the deadline order index", err)
	}
	if built == 1 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for _, st := range states {
		ms, ok := lifecycle.DeadlineOrder(st)
		if !ok {
			continue
		}
		z := redis.Z{Score: float64(ms), Member: st.GetAlertId()}
		pipe.ZAddNX(ctx, s.orderKey(""), z)
		pipe.ZAddNX(ctx, s.orderKey(st.GetTenant()), z)
	}
	pipe.Set(ctx, s.orderBuiltKey(), "1", 0)
	if _, err := pipe.Exec(ctx); err != nil {
		return s.wrap("build the deadline order index", err)
	}
	return nil
}
