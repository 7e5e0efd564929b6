// Package timers keeps SLA timers (escalation timeouts, clock breaches) in
// Redis and fires them close to their deadline, from any number of replicas
// sharing one Redis (or Redis Cluster).
//
// # Model
//
// A timer is an id chosen by the caller (Herald uses "alertID:step:kind"), a
// due time and an opaque payload. A Store keeps it in sorted sets: the due
// set (score = due time in ms) and the leased set (score = lease expiry in
// ms), plus hashes for the payload, the original due time, the lease token
// and the attempt count. Every key of a shard shares one hash tag
// ("{<namespace>:timers:<shard>}"), so each Lua script touches one cluster
// slot; a timer's shard is a hash of its id.
//
// Claim atomically (one Lua script per shard) returns expired leases to the
// due set, then moves up to max due timers to the leased set with a fresh
// lease token. Confirm deletes a claimed timer and Release puts it back, but
// only while the caller's lease token still holds: a late Confirm after the
// lease expired and another replica re-claimed the timer does nothing and
// reports ErrLeaseLost. "now" is always the caller's clock.Clock, passed to
// the scripts as an argument (never Redis TIME), so a simulated clock drives
// the whole store in tests. Replicas' clocks must be kept in sync (NTP);
// skew adds to lateness and shortens leases.
//
// The Poller sleeps until the earliest deadline (read by the claim itself),
// capped at a small maximum, and wakes early when a timer is armed that is
// due sooner (in-process, and across replicas through Redis pub/sub). It
// never polls on a fixed multi-second tick. It claims a timer a little
// ahead of its deadline (PollerConfig.Lookahead) and waits for the exact
// deadline in-process, so the Redis round trip is off the firing path; a
// handler never runs before Due.
//
// # Guarantees
//
//   - At-least-once firing: a timer armed (Arm returned nil) fires at or
//     after its due time until a handler succeeds and Confirm runs, unless it
//     is cancelled or re-armed. A crash between the handler's side effect and
//     Confirm, an expired lease, or a re-arm of a timer that is firing fires
//     it again. There is no exactly-once: handlers make their effects
//     idempotent with deterministic ids (Herald derives event ids from
//     alert id, step and kind), which makes a double fire harmless.
//   - While a lease holds, no other claim returns the same timer, so several
//     pollers never run the same timer concurrently unless a handler
//     outlives its lease (the Poller cancels the handler's context when the
//     lease ends).
//   - Redis is a cache, never the truth. If it is wiped (FLUSHALL, failover
//     to an empty replica, eviction) the timers are gone; CheckEpoch reports
//     it so that the owner re-arms every open timer from its durable log.
//     Run Redis with maxmemory-policy noeviction.
//   - Arm is an upsert keyed by id and is idempotent: arming the same id
//     with the same due time and payload again changes nothing (not even a
//     running lease); a different due time or payload moves the deadline
//     and supersedes any lease in flight.
//   - Cancel and re-arm race with firing: a timer cancelled or re-armed
//     while it is being fired (or within Lookahead of its deadline) may
//     still fire once. Handlers check their own state (Herald: is the alert
//     still open?) before acting.
package timers
