package timers

import "github.com/redis/go-redis/v9"

// Every script takes the keys of one shard, in this order.
const (
	keyDue      = iota // ZSET id -> due (or retry) time, ms
	keyLeased          // ZSET id -> lease expiry, ms
	keyPayload         // HASH id -> payload
	keyDueAt           // HASH id -> armed due time, µs (exact deadline)
	keyToken           // HASH id -> lease token while leased
	keyAttempts        // HASH id -> claims since last arm
	keyEpoch           // STRING epoch id of this shard
	numKeys
)

// armScript upserts timers. ARGV: quadruplets id, due ms (the score,
// rounded up), due µs (the exact deadline), payload.
// Re-arming with the same due and payload is a no-op (a lease in flight is
// kept); otherwise the timer goes to the due set and any lease is dropped.
// Returns how many timers changed.
var armScript = redis.NewScript(`
local changed = 0
for i = 1, #ARGV, 4 do
  local id, score, due, payload = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  local same = redis.call('HGET', KEYS[4], id) == due and redis.call('HGET', KEYS[3], id) == payload
  if not same then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
    redis.call('ZADD', KEYS[1], score, id)
    redis.call('HSET', KEYS[3], id, payload)
    redis.call('HSET', KEYS[4], id, due)
    changed = changed + 1
  end
end
return changed
`)

// cancelScript removes a timer everywhere. ARGV: id. Returns 1 if it existed.
var cancelScript = redis.NewScript(`
local id = ARGV[1]
local n = redis.call('ZREM', KEYS[1], id) + redis.call('ZREM', KEYS[2], id)
redis.call('HDEL', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
redis.call('HDEL', KEYS[5], id)
redis.call('HDEL', KEYS[6], id)
if n > 0 then return 1 end
return 0
`)

// claimScript: ARGV now ms, lease ms, max, token, max expired leases to
// return, due-before ms (>= now: claim timers due up to then). First moves
// expired leases back to the due set (at their original due time, so overdue
// timers come first), then leases up to max timers due by due-before.
// Returns {next, id, due, payload, attempt, ...} where next is when the
// caller should claim again: the earliest remaining due score less the
// look-ahead (due-before minus now), or the earliest lease expiry, whichever
// is first; -1 if both sets are empty.
var claimScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local leaseUntil = now + tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local token = ARGV[4]
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(expired) do
  local due = redis.call('HGET', KEYS[4], id)
  local score = now
  if due then score = math.ceil(tonumber(due) / 1000) end
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('ZADD', KEYS[1], score, id)
end
local out = {-1}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[6]), 'LIMIT', 0, max)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], leaseUntil, id)
  redis.call('HSET', KEYS[5], id, token)
  local attempt = redis.call('HINCRBY', KEYS[6], id, 1)
  out[#out+1] = id
  out[#out+1] = redis.call('HGET', KEYS[4], id) or tostring(now * 1000)
  out[#out+1] = redis.call('HGET', KEYS[3], id) or ''
  out[#out+1] = attempt
end
local next = -1
local d = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if d[2] then next = tonumber(d[2]) - (tonumber(ARGV[6]) - now) end
local l = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if l[2] and (next < 0 or tonumber(l[2]) < next) then next = tonumber(l[2]) end
out[1] = next
return out
`)

// finishScript confirms (deletes) or releases (back to the due set at a
// time) claimed timers whose lease token still holds. ARGV: quadruplets op
// ("c" confirm, "r" release), id, token, release-at ms. Returns one 1 (done)
// or 0 (lease lost, nothing changed) per quadruplet.
var finishScript = redis.NewScript(`
local out = {}
for i = 1, #ARGV, 4 do
  local op, id, token = ARGV[i], ARGV[i+1], ARGV[i+2]
  if redis.call('HGET', KEYS[5], id) ~= token then
    out[#out+1] = 0
  elseif op == 'c' then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
    out[#out+1] = 1
  else
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('ZADD', KEYS[1], ARGV[i+3], id)
    out[#out+1] = 1
  end
end
return out
`)

// epochScript returns {epoch, created}: the shard's epoch id, creating it
// from ARGV[1] when missing.
var epochScript = redis.NewScript(`
local v = redis.call('GET', KEYS[7])
if v then return {v, 0} end
redis.call('SET', KEYS[7], ARGV[1])
return {ARGV[1], 1}
`)

// nextScript returns the earliest score of the due or leased set, or -1.
var nextScript = redis.NewScript(`
local next = -1
local d = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if d[2] then next = tonumber(d[2]) end
local l = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if l[2] and (next < 0 or tonumber(l[2]) < next) then next = tonumber(l[2]) end
return next
`)
