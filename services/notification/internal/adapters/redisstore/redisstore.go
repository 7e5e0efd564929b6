// Package redisstore implements app.Store on Redis: the alert projection,
// the notification records and the durable job schedule. Keys of one alert
// share a hash tag ({alert id}); the schedule is one sorted set per
// priority (score = due time in ms, member = the job's JSON), claimed by a
// Lua script that leases due jobs atomically. The writes that must be
// atomic (a projection with the jobs it schedules, a step's fan-out) are
// Lua scripts too, and span an alert's keys and a schedule, so they need
// one Redis (or its primary), not Redis Cluster.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/app"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// Store is the Redis store.
type Store struct {
	rdb     redis.UniversalClient
	pipes   pipeliner      // the plain (not transactional) pipelines
	scripts redis.Scripter // the atomic writes
	prefix  string
}

// pipeliner runs a pipeline (redis.UniversalClient, redisbatch.Batcher).
type pipeliner interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// New returns a store whose keys start with prefix (e.g. "herald:notification").
func New(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, pipes: rdb, scripts: rdb, prefix: prefix}
}

// ScriptsVia runs the store's atomic writes (scripts) through sc, a
// redisbatch.Batcher, instead of straight on the client. It returns s.
func (s *Store) ScriptsVia(sc redis.Scripter) *Store {
	s.scripts = sc
	return s
}

// PipelinesVia sends the store's plain pipelines through p, a
// redisbatch.Batcher that lets the pipelines of concurrent lanes and
// workers share round trips, instead of straight to the client. It
// returns s.
func (s *Store) PipelinesVia(p pipeliner) *Store {
	s.pipes = p
	return s
}

func (s *Store) alertKey(id string) string { return s.prefix + ":alert:{" + id + "}" }
func (s *Store) recKey(alertID, nid string) string {
	return s.prefix + ":rec:{" + alertID + "}:" + nid
}
func (s *Store) recIndex(alertID string) string { return s.prefix + ":recs:{" + alertID + "}" }
func (s *Store) nidKey(nid string) string       { return s.prefix + ":nid:" + nid }

// dueKey is the schedule of j: critical jobs have their own.
func (s *Store) dueKey(j app.Job) string {
	if j.Critical {
		return s.prefix + ":due:critical"
	}
	return s.prefix + ":due"
}

// schedules are both schedules, in the order they are claimed from.
func (s *Store) schedules() []string {
	return []string{s.dueKey(app.Job{Critical: true}), s.dueKey(app.Job{})}
}
func (s *Store) stepKey(j app.Job) string {
	if j.Breach != 0 {
		// A breach notice's recipients are not the step's.
		return fmt.Sprintf("%s:step:{%s}:%d:breach:%d", s.prefix, j.AlertID, j.Round, j.Breach)
	}
	return fmt.Sprintf("%s:step:{%s}:%d:%d:%d:%t", s.prefix, j.AlertID, j.Round, j.Step, j.Repeat, j.Failsafe)
}

func member(j app.Job) string {
	b, _ := json.Marshal(j) // a struct of strings, ints and bools always encodes
	return string(b)
}

// Alert implements app.Store.
func (s *Store) Alert(ctx context.Context, id string) (domain.Alert, error) {
	return alertFrom(id, s.rdb.Get(ctx, s.alertKey(id)))
}

// alertFrom decodes the alert projection that get read (the zero Alert when
// the key does not exist).
func alertFrom(id string, get *redis.StringCmd) (domain.Alert, error) {
	b, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return domain.Alert{}, nil
	}
	if err != nil {
		return domain.Alert{}, fmt.Errorf("load alert %s: %w", id, err)
	}
	var a domain.Alert
	if err := json.Unmarshal(b, &a); err != nil {
		return domain.Alert{}, fmt.Errorf("decode alert %s: %w", id, err)
	}
	return a, nil
}

// ProjectedAlert implements app.Store.
func (s *Store) ProjectedAlert(ctx context.Context, id string) (domain.Alert, bool, error) {
	var epoch *redis.IntCmd
	var get *redis.StringCmd
	_, err := s.pipes.Pipelined(ctx, func(p redis.Pipeliner) error {
		epoch = p.Exists(ctx, s.epochKey())
		get = p.Get(ctx, s.alertKey(id))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return domain.Alert{}, false, fmt.Errorf("load alert %s: %w", id, err)
	}
	if epoch.Val() != 1 {
		return domain.Alert{}, false, nil
	}
	a, err := alertFrom(id, get)
	if err != nil {
		return domain.Alert{}, false, err
	}
	return a, true, nil
}

// CreateAlert implements app.Store. The epoch is read in the same pipeline,
// not atomically with the write: SET NX never overwrites, and what it
// writes is the fold of the alert's first event, so a rebuild running at
// the same time still ends with the whole fold.
func (s *Store) CreateAlert(ctx context.Context, a domain.Alert) (bool, bool, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return false, false, fmt.Errorf("encode alert %s: %w", a.ID, err)
	}
	var epoch *redis.IntCmd
	var set *redis.BoolCmd
	_, err = s.pipes.Pipelined(ctx, func(p redis.Pipeliner) error {
		epoch = p.Exists(ctx, s.epochKey())
		set = p.SetNX(ctx, s.alertKey(a.ID), b, 0)
		return nil
	})
	if err != nil {
		return false, false, fmt.Errorf("create alert %s: %w", a.ID, err)
	}
	return set.Val(), epoch.Val() == 1, nil
}

// saveAlertScript stores the projection ARGV[1] at KEYS[1] and schedules
// each job ARGV[2+i] on the schedule KEYS[1+i] at ARGV[2] unless it is
// there already, atomically; it returns 1 or 0 per job (added or not).
var saveAlertScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1])
local added = {}
for i = 2, #KEYS do
  added[i-1] = redis.call('ZADD', KEYS[i], 'NX', ARGV[2], ARGV[i+1])
end
return added
`)

// SaveAlert implements app.Store. It is one script, not a MULTI/EXEC
// transaction, so that concurrent handlers' writes can share round trips
// (ScriptsVia).
func (s *Store) SaveAlert(ctx context.Context, a domain.Alert, jobs []app.Job, due time.Time) ([]bool, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode alert %s: %w", a.ID, err)
	}
	keys := []string{s.alertKey(a.ID)}
	args := []any{b, due.UnixMilli()}
	for _, j := range jobs {
		keys = append(keys, s.dueKey(j))
		args = append(args, member(j))
	}
	res, err := saveAlertScript.Run(ctx, s.scripts, keys, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("save alert %s: %w", a.ID, err)
	}
	if len(res) != len(jobs) {
		return nil, fmt.Errorf("save alert %s: %d replies for %d jobs", a.ID, len(res), len(jobs))
	}
	added := make([]bool, len(jobs))
	for i, n := range res {
		added[i] = n == 1
	}
	return added, nil
}

// claimScript leases up to ARGV[2] members due at ARGV[1] by moving their
// score to ARGV[3].
var claimScript = redis.NewScript(`
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], m)
end
return due
`)

// Claim implements app.Store: the critical schedule first, then the other
// with what is left of n (one round trip each; the keys share no hash slot).
func (s *Store) Claim(ctx context.Context, now time.Time, n int, lease time.Duration) ([]app.Job, error) {
	var jobs []app.Job
	for _, key := range s.schedules() {
		if len(jobs) >= n {
			break
		}
		res, err := claimScript.Run(ctx, s.rdb, []string{key},
			now.UnixMilli(), n-len(jobs), now.Add(lease).UnixMilli()).StringSlice()
		if err != nil {
			if len(jobs) > 0 {
				return jobs, nil // leased already: work them; the next poll meets the error
			}
			return nil, fmt.Errorf("claim jobs: %w", err)
		}
		for _, m := range res {
			var j app.Job
			if err := json.Unmarshal([]byte(m), &j); err != nil {
				// A member that cannot be decoded can never be worked: drop it.
				s.rdb.ZRem(ctx, key, m)
				continue
			}
			jobs = append(jobs, j)
		}
	}
	return jobs, nil
}

// NextDue implements app.Store.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var firsts []*redis.ZSliceCmd
	_, err := s.pipes.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, key := range s.schedules() {
			firsts = append(firsts, p.ZRangeWithScores(ctx, key, 0, 0))
		}
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read next due job: %w", err)
	}
	var next time.Time
	found := false
	for _, c := range firsts {
		if zs := c.Val(); len(zs) > 0 {
			if at := time.UnixMilli(int64(zs[0].Score)); !found || at.Before(next) {
				next, found = at, true
			}
		}
	}
	return next, found, nil
}

// Reschedule implements app.Store.
func (s *Store) Reschedule(ctx context.Context, j app.Job, at time.Time) error {
	if err := s.rdb.ZAdd(ctx, s.dueKey(j), redis.Z{Score: float64(at.UnixMilli()), Member: member(j)}).Err(); err != nil {
		return fmt.Errorf("reschedule job of alert %s: %w", j.AlertID, err)
	}
	return nil
}

// Done implements app.Store.
func (s *Store) Done(ctx context.Context, j app.Job) error {
	if err := s.rdb.ZRem(ctx, s.dueKey(j), member(j)).Err(); err != nil {
		return fmt.Errorf("remove job of alert %s: %w", j.AlertID, err)
	}
	return nil
}

// renewScript extends leases: for each job i, if its schedule KEYS[i]
// still scores its member ARGV[2i] at ARGV[2i+1] (the lease end the caller
// gave it), the score becomes ARGV[1]. It returns 1 or 0 per job.
var renewScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  local cur = redis.call('ZSCORE', KEYS[i], ARGV[2*i])
  if cur and tonumber(cur) == tonumber(ARGV[2*i+1]) then
    redis.call('ZADD', KEYS[i], 'XX', ARGV[1], ARGV[2*i])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`)

// Renew implements app.Store.
func (s *Store) Renew(ctx context.Context, leases []app.Lease, until time.Time) ([]bool, error) {
	keys := make([]string, 0, len(leases))
	args := []any{until.UnixMilli()}
	for _, l := range leases {
		keys = append(keys, s.dueKey(l.Job))
		args = append(args, member(l.Job), l.Until.UnixMilli())
	}
	res, err := renewScript.Run(ctx, s.scripts, keys, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("renew %d job leases: %w", len(leases), err)
	}
	if len(res) != len(leases) {
		return nil, fmt.Errorf("renew job leases: %d replies for %d jobs", len(res), len(leases))
	}
	out := make([]bool, len(res))
	for i, n := range res {
		out[i] = n == 1
	}
	return out, nil
}

// fanOutScript records the recipients of a step and schedules their jobs,
// and removes the step's job, atomically. KEYS[1] is the step's recipient
// set, KEYS[2] the step job's schedule, KEYS[2+i] recipient i's;
// ARGV[1] is the lease end, ARGV[2] the step job and ARGV[1+2i],
// ARGV[2+2i] recipient i's person id and job.
var fanOutScript = redis.NewScript(`
for i = 3, #KEYS do
  redis.call('SADD', KEYS[1], ARGV[2*i-3])
  redis.call('ZADD', KEYS[i], 'NX', ARGV[1], ARGV[2*i-2])
end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
`)

// FanOut implements app.Store.
func (s *Store) FanOut(ctx context.Context, step app.Job, recipients []app.Job, leasedUntil time.Time) error {
	keys := []string{s.stepKey(step), s.dueKey(step)}
	args := []any{leasedUntil.UnixMilli(), member(step)}
	for _, r := range recipients {
		keys = append(keys, s.dueKey(r))
		args = append(args, r.PersonID, member(r))
	}
	if err := fanOutScript.Run(ctx, s.scripts, keys, args...).Err(); err != nil {
		return fmt.Errorf("fan out step %d of alert %s: %w", step.Step, step.AlertID, err)
	}
	return nil
}

// Exhaust implements app.Store.
func (s *Store) Exhaust(ctx context.Context, j app.Job) (int, int, error) {
	var all, ex *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, s.stepKey(j)+":x", j.PersonID)
		all = p.SCard(ctx, s.stepKey(j))
		ex = p.SCard(ctx, s.stepKey(j)+":x")
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("record exhausted recipient of alert %s: %w", j.AlertID, err)
	}
	return int(all.Val()), int(ex.Val()), nil
}

// claimAttemptScript takes the attempt key KEYS[1] for ARGV[1] ms and, if it got
// it, stores the record ARGV[2] at KEYS[2].
var claimAttemptScript = redis.NewScript(`
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
`)

// ClaimAttempt implements app.Store.
func (s *Store) ClaimAttempt(ctx context.Context, r app.Record, ttl time.Duration) (bool, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("encode notification %s: %w", r.NotificationID, err)
	}
	key := fmt.Sprintf("%s:attempt:{%s}:%s:%d", s.prefix, r.AlertID, r.NotificationID, r.Attempts)
	var claim *redis.Cmd
	// The script and the index entries go in one round trip. The entries
	// are idempotent, so a worker that loses the claim adds nothing new.
	// Eval, not EvalSha: a pipeline cannot fall back when Redis has
	// forgotten the script.
	_, err = s.pipes.Pipelined(ctx, func(p redis.Pipeliner) error {
		claim = claimAttemptScript.Eval(ctx, p, []string{key, s.recKey(r.AlertID, r.NotificationID)}, ttl.Milliseconds(), b)
		s.index(ctx, p, r)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("claim attempt %d of notification %s: %w", r.Attempts, r.NotificationID, err)
	}
	return claim.Val() == int64(1), nil
}

// Record implements app.Store.
func (s *Store) Record(ctx context.Context, alertID, nid string) (app.Record, error) {
	var get *redis.StringCmd
	_, err := s.pipes.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, s.recKey(alertID, nid))
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return app.Record{}, nil
	}
	if err != nil {
		return app.Record{}, fmt.Errorf("load notification %s: %w", nid, err)
	}
	var r app.Record
	if err := json.Unmarshal([]byte(get.Val()), &r); err != nil {
		return app.Record{}, fmt.Errorf("decode notification %s: %w", nid, err)
	}
	return r, nil
}

// PutRecord implements app.Store.
func (s *Store) PutRecord(ctx context.Context, r app.Record) error {
	return s.putRecord(ctx, r, nil)
}

// PutRecordDone implements app.Store.
func (s *Store) PutRecordDone(ctx context.Context, r app.Record, j app.Job) error {
	return s.putRecord(ctx, r, &j)
}

func (s *Store) putRecord(ctx context.Context, r app.Record, done *app.Job) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode notification %s: %w", r.NotificationID, err)
	}
	// One round trip; not a transaction: the index entries are idempotent
	// and the id index has no hash tag of the alert.
	_, err = s.pipes.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.recKey(r.AlertID, r.NotificationID), b, 0)
		s.index(ctx, p, r)
		if done != nil {
			p.ZRem(ctx, s.dueKey(*done), member(*done))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store notification %s: %w", r.NotificationID, err)
	}
	return nil
}

// restoreRecordScript writes the record ARGV[1] at KEYS[1] unless the
// record there is newer: a later attempt, or the same attempt with an
// outcome or a live worker's claim where ARGV[1] is an attempt restored in
// flight (phase ARGV[2]). It returns 1 if it wrote.
var restoreRecordScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local old, new = cjson.decode(cur), cjson.decode(ARGV[1])
  local oa, na = tonumber(old.attempts) or 0, tonumber(new.attempts) or 0
  local sending = tonumber(ARGV[2])
  if oa > na then return 0 end
  if oa == na and tonumber(new.phase) == sending and not (tonumber(old.phase) == sending and old.restored == true) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// RestoreRecord implements app.Store: a record a live worker wrote after
// Redis was lost (a send recorded, or claimed, while the rebuild read the
// log) is not put back to what the log said before it; a record of an
// earlier rebuild (a rebuilder killed mid-way) is brought up to date.
func (s *Store) RestoreRecord(ctx context.Context, r app.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode notification %s: %w", r.NotificationID, err)
	}
	_, err = s.pipes.Pipelined(ctx, func(p redis.Pipeliner) error {
		restoreRecordScript.Eval(ctx, p, []string{s.recKey(r.AlertID, r.NotificationID)}, b, int(domain.PhaseSending))
		s.index(ctx, p, r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore notification %s: %w", r.NotificationID, err)
	}
	return nil
}

// index queues the entries that find r by alert and by id.
func (s *Store) index(ctx context.Context, p redis.Pipeliner, r app.Record) {
	p.ZAddNX(ctx, s.recIndex(r.AlertID), redis.Z{Score: float64(r.CreatedAt.UnixNano()), Member: r.NotificationID})
	p.SetNX(ctx, s.nidKey(r.NotificationID), r.AlertID, 0)
}

// Records implements app.Store.
func (s *Store) Records(ctx context.Context, alertID string) ([]app.Record, error) {
	ids, err := s.rdb.ZRange(ctx, s.recIndex(alertID), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list notifications of alert %s: %w", alertID, err)
	}
	out := make([]app.Record, 0, len(ids))
	for _, id := range ids {
		r, err := s.Record(ctx, alertID, id)
		if err != nil {
			return nil, err
		}
		if r.NotificationID != "" {
			out = append(out, r)
		}
	}
	return out, nil
}

// AlertOf implements app.Store.
func (s *Store) AlertOf(ctx context.Context, nid string) (string, error) {
	v, err := s.rdb.Get(ctx, s.nidKey(nid)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up notification %s: %w", nid, err)
	}
	return v, nil
}

func (s *Store) epochKey() string { return s.prefix + ":epoch" }
func (s *Store) lockKey() string  { return s.prefix + ":rebuild-lock" }

// Epoch implements app.Store.
func (s *Store) Epoch(ctx context.Context) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.epochKey()).Result()
	if err != nil {
		return false, fmt.Errorf("read epoch: %w", err)
	}
	return n == 1, nil
}

// SetEpoch implements app.Store.
func (s *Store) SetEpoch(ctx context.Context) error {
	if err := s.rdb.Set(ctx, s.epochKey(), time.Now().UTC().Format(time.RFC3339), 0).Err(); err != nil {
		return fmt.Errorf("set epoch: %w", err)
	}
	return nil
}

// LockRebuild implements app.Store.
func (s *Store) LockRebuild(ctx context.Context, token string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.lockKey(), token, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("take rebuild lock: %w", err)
	}
	return ok, nil
}

// renewLockScript extends the lock KEYS[1] to ARGV[2] ms if it still holds
// the token ARGV[1].
var renewLockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// RenewRebuild implements app.Store.
func (s *Store) RenewRebuild(ctx context.Context, token string, ttl time.Duration) (bool, error) {
	n, err := renewLockScript.Run(ctx, s.rdb, []string{s.lockKey()}, token, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("renew rebuild lock: %w", err)
	}
	return n == 1, nil
}

// unlockScript deletes the lock KEYS[1] if it still holds the token ARGV[1].
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// UnlockRebuild implements app.Store.
func (s *Store) UnlockRebuild(ctx context.Context, token string) error {
	if err := unlockScript.Run(ctx, s.rdb, []string{s.lockKey()}, token).Err(); err != nil {
		return fmt.Errorf("release rebuild lock: %w", err)
	}
	return nil
}

var _ app.Store = (*Store)(nil)

func (s *Store) digestKey(person string, ch eventsv1.Channel) string {
	return fmt.Sprintf("%s:digest:{%s}:%d", s.prefix, person, ch)
}
func (s *Store) digestAtKey(person string, ch eventsv1.Channel) string {
	return fmt.Sprintf("%s:digest-at:{%s}:%d", s.prefix, person, ch)
}
func digestJob(person string, ch eventsv1.Channel) app.Job {
	return app.Job{Kind: app.JobDigest, PersonID: person, Channel: ch}
}

// deferScript: KEYS[1] the digest's items, KEYS[2] its due time, KEYS[3]
// the schedule of the digest job, KEYS[4] the schedule of the recipient
// job; ARGV[1] the item's id, ARGV[2] the item, ARGV[3] the proposed due
// time, ARGV[4] the digest job, ARGV[5] the recipient job. Returns the
// digest's due time.
var deferScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local due = redis.call('GET', KEYS[2])
if not due then
  due = ARGV[3]
  redis.call('SET', KEYS[2], due)
  redis.call('ZADD', KEYS[3], 'NX', due, ARGV[4])
end
redis.call('ZREM', KEYS[4], ARGV[5])
return tonumber(due)
`)

// DeferToDigest implements app.Store.
func (s *Store) DeferToDigest(ctx context.Context, j app.Job, it app.DigestItem, at time.Time) (time.Time, error) {
	b, err := json.Marshal(it)
	if err != nil {
		return time.Time{}, fmt.Errorf("encode digest item %s: %w", it.NotificationID, err)
	}
	dj := digestJob(it.PersonID, it.Channel)
	due, err := deferScript.Run(ctx, s.scripts, []string{s.digestKey(it.PersonID, it.Channel), s.digestAtKey(it.PersonID, it.Channel),
		s.dueKey(dj), s.dueKey(j)}, it.NotificationID, b, at.UnixMilli(), member(dj), member(j)).Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("defer notification %s to a digest: %w", it.NotificationID, err)
	}
	return time.UnixMilli(due), nil
}

// DigestItems implements app.Store.
func (s *Store) DigestItems(ctx context.Context, person string, ch eventsv1.Channel) ([]app.DigestItem, error) {
	all, err := s.rdb.HGetAll(ctx, s.digestKey(person, ch)).Result()
	if err != nil {
		return nil, fmt.Errorf("load digest: %w", err)
	}
	out := make([]app.DigestItem, 0, len(all))
	for _, v := range all {
		var it app.DigestItem
		if err := json.Unmarshal([]byte(v), &it); err != nil {
			continue // cannot be sent: its record stays deferred, visible
		}
		out = append(out, it)
	}
	return out, nil
}

// ClaimDigest implements app.Store.
func (s *Store) ClaimDigest(ctx context.Context, id string, ttl time.Duration) (uint32, error) {
	key := s.prefix + ":digest-claims:" + id
	var n *redis.IntCmd
	if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.Incr(ctx, key)
		p.Expire(ctx, key, ttl)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("claim digest %s: %w", id, err)
	}
	return uint32(n.Val()), nil
}

// finishDigestScript: KEYS as deferScript's first three; ARGV[1] the
// digest job, ARGV[2] the next due time, ARGV[3..] the items sent.
var finishDigestScript = redis.NewScript(`
for i = 3, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
end
return 1
`)

// FinishDigest implements app.Store.
func (s *Store) FinishDigest(ctx context.Context, j app.Job, nids []string, next time.Time) error {
	args := []any{member(j), next.UnixMilli()}
	for _, n := range nids {
		args = append(args, n)
	}
	err := finishDigestScript.Run(ctx, s.scripts, []string{s.digestKey(j.PersonID, j.Channel), s.digestAtKey(j.PersonID, j.Channel),
		s.dueKey(j)}, args...).Err()
	if err != nil {
		return fmt.Errorf("finish digest: %w", err)
	}
	return nil
}

// PutDigestRefs implements app.Store.
func (s *Store) PutDigestRefs(ctx context.Context, digestID string, refs []app.DigestRef, ttl time.Duration) error {
	b, err := json.Marshal(refs)
	if err != nil {
		return fmt.Errorf("encode digest %s: %w", digestID, err)
	}
	if err := s.rdb.Set(ctx, s.prefix+":digest-refs:"+digestID, b, ttl).Err(); err != nil {
		return fmt.Errorf("store digest %s: %w", digestID, err)
	}
	return nil
}

// DigestRefs implements app.Store.
func (s *Store) DigestRefs(ctx context.Context, digestID string) ([]app.DigestRef, error) {
	b, err := s.rdb.Get(ctx, s.prefix+":digest-refs:"+digestID).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load digest %s: %w", digestID, err)
	}
	var refs []app.DigestRef
	if err := json.Unmarshal(b, &refs); err != nil {
		return nil, fmt.Errorf("decode digest %s: %w", digestID, err)
	}
	return refs, nil
}
