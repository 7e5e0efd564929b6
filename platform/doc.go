// Package platform is the root of Herald's shared infrastructure: clock,
// config, logging, telemetry, grpcserver, eventlog (Kafka), timers (Redis),
// redisbatch (shared Redis round trips) and devstack (embedded infrastructure for `make run`). It makes no domain
// decisions and imports no service.
package platform
