// Package e2e holds Herald's black-box suites: the four services built and
// started as separate processes against the real Kafka and Redis that
// `make test` starts, fed through HL7 v2 over MLLP, FHIR and gRPC, and
// observed at real protocol sinks (an SMTP server, a webhook receiver, an
// OTLP trace receiver). See harness for the pieces.
//
// The suites assert behaviour, never speed: they count messages once
// Herald is quiet (System.WaitQuiet: every consumer group at the log's end,
// no notification job left) rather than after a sleep, and they judge
// "on time" and "at once" from the log (each escalation's reason and its
// occurred_at against its step's deadline), not from gaps between mail
// arrivals. Most suites run with the development identity and no rate
// limit; one runs the real OpenID Connect login and one the rate limiter.
package e2e
