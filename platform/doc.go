// Package platform is the root of Herald's shared infrastructure: clock,
// config, logging, telemetry, grpcserver, eventlog (Kafka), timers (Redis),
// redisbatch (shared Redis round trips), redisconn (how every service
// connects to Redis), mtls (TLS material from files, reloaded on change),
// devca (a development CA), servicemain (the service shell: lifecycle,
// security policy, main) and devstack (embedded infrastructure for `make
// run`). It makes no domain decisions and imports no service.
package platform
