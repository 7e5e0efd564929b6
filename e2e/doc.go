// Package e2e holds Herald's black-box suites: the four services built and
// started as separate processes against the real Kafka and Redis that
// `make test` starts, fed through HL7 v2 over MLLP, FHIR and gRPC, and
// observed at real protocol sinks (an SMTP server, a webhook receiver, an
// OTLP trace receiver). See harness for the pieces.
package e2e
