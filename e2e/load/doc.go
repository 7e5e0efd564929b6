// Package load is Herald's load harness, the benchmark behind `make bench`.
// BenchmarkHerald (in load_test.go) builds the four services, runs them as
// separate processes against the real Kafka and Redis from `make deps-up`
// (acks=all at every hop), drives intake's gRPC RaiseAlert from concurrent
// clients and observes the result at an in-process SMTP sink and on the
// event log. It measures the sustained alert rate with nothing lost, the
// latency from intake's durable ACK to the first email, timer lateness and
// the processes' CPU and memory, and writes a Markdown report
// (bench-report.md at the repository root by default). It fails when an
// alert is lost or a message is sent twice (report.verdict), so `make
// bench` exits non-zero then; figures are measured, never judged.
//
// Full run (the `make bench` default: latency at 100/s, timers, CPU per
// alert at 30, 100, 300 and 1,000 alerts/s, then 1,000 alerts/s for 60 s;
// about eight minutes on a quiet machine):
//
//	cd e2e && go test -run '^$' -bench Herald -benchtime 1x -timeout 30m ./load
//
// CPU per alert at low rates only, with profiles:
//
//	cd e2e && go test -run '^$' -bench Herald -benchtime 1x ./load -args -load.phases cpu -load.cpu-rates 30,100 -load.pprof /tmp/prof
//
// Durations and rates are set by the -load.* flags, not by -benchtime; run
// it with -benchtime 1x. -load.pprof DIR saves a CPU profile of each service
// taken during the throughput phase and each cpu sub-phase (go tool pprof
// DIR/cpu-30/notification.pprof). `make bench-peer` runs the latency phase
// in alternation with the Alertmanager peer (tools/benchpeer).
//
// BenchmarkTLSCost (tlscost_test.go) measures what TLS everywhere costs
// against the plaintext development mode, in alternating pairs of systems
// in one run (docs/performance.md):
//
//	cd e2e && go test -run '^$' -bench TLSCost -benchtime 1x -timeout 30m ./load -args -load.pairs 3
package load
