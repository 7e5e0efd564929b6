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
// Quick run (about three minutes, the `make bench` default):
//
//	cd e2e && go test -run '^$' -bench Herald -benchtime 1x ./load
//
// Full run (the targets: 1,000 alerts/s for 60 s):
//
//	cd e2e && go test -run '^$' -bench Herald -benchtime 1x -timeout 30m ./load -args -load.duration 60s
//
// Durations and rates are set by the -load.* flags, not by -benchtime; run
// it with -benchtime 1x. -load.pprof DIR saves a CPU profile of each service
// taken during the throughput phase (go tool pprof DIR/notification.pprof).
//
// BenchmarkTLSCost (tlscost_test.go) measures what TLS everywhere costs
// against the plaintext development mode, in alternating pairs of systems
// in one run (docs/performance.md):
//
//	cd e2e && go test -run '^$' -bench TLSCost -benchtime 1x -timeout 30m ./load -args -load.pairs 3
package load
