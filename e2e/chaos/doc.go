// Package chaos is Herald's multi-replica chaos suite (issue #17). TestChaos
// builds the four services once and runs two replicas of each as separate
// processes against the real Kafka and a Redis of the suite's own, behind
// small TCP balancers (what a Kubernetes Service does). It drives about 30
// alerts/s over HL7 v2 MLLP, acknowledges some of them through the mail's
// acknowledge link or gRPC and leaves the rest to climb to the fail-safe
// queue, while a fault schedule SIGKILLs and restarts a replica every few
// seconds, wipes Redis once (FLUSHALL) and, on the three-broker KRaft
// cluster of `deps.sh cluster-up`, restarts one broker cleanly and kills
// another mid-run.
//
// Its invariants come from the event log (read by the suite's own
// readers) and from the protocol sinks (an SMTP server and a webhook
// receiver), never from Herald's own state:
//
//   - every accepted alert ends acknowledged or fail-safe queued;
//   - no duplicate message per (alert, step, recipient);
//   - no escalation decided after an acknowledgement already in the log
//     (its occurred_at is after the moment the acknowledgement call
//     returned success, so the acknowledgement was durable), and no message
//     whose SMTP transaction or webhook request began more than the race
//     window after it (the sends inside the window are the measured race
//     of an acknowledgement with a send already on its way);
//   - every deadline (step timeouts and the category's clocks) fires: none
//     is left unfired once the run has converged; lateness is printed;
//   - every step message that was never sent has an event saying why
//     (NotificationFailed, or NotificationSuperseded once the event
//     exists in proto; until then the silent skips are counted, not
//     asserted).
//
// The short form runs in `make test` (about a minute of load); the long
// form is `make chaos` (about ten minutes, on the three-broker cluster):
//
//	cd e2e && go test -run TestChaos -timeout 30m ./chaos -args -chaos.long
//
// See e2e/README.md for the flags and docs/performance.md for figures.
package chaos
