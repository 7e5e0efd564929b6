package audit_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

// BenchmarkSeal measures chaining one record (canonical encoding and
// SHA-256) and reports the median and p99 of single seals
// (docs/performance.md, "Audit hashing").
func BenchmarkSeal(b *testing.B) {
	entry := &auditv1.AuditRecord{Trust: "RXF", AlertId: "0123456789abcdef0123456789abcdef", EventId: "fedcba9876543210fedcba9876543210",
		EventType: "AlertAcknowledged", Actor: &auditv1.AuditActor{PersonId: "dr-jones", Role: "clinician", IdentityProvider: "oidc",
			Issuer:  "https://am.nhsidentity.spineservices.nhs.uk/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare",
			Subject: "910000000001", Acr: "AAL3_ANY", RelayingService: "spiffe://herald/acknowledgement"},
		OccurredAt: timestamppb.New(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)), PolicyId: "rxf-radiology", PolicyVersion: "12",
		PolicyContentHash: "9f2c4e0d3b1a5c7e9f2c4e0d3b1a5c7e9f2c4e0d3b1a5c7e9f2c4e0d3b1a5c7e", Producer: "acknowledgement/ack-7d9f-1",
		Detail: "step=1 via=link"}
	c := audit.NewChain("RXF")
	durations := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		rec := c.Next(entry)
		durations = append(durations, time.Since(start))
		c.Follow(rec)
	}
	b.StopTimer()
	slices.Sort(durations)
	b.ReportMetric(float64(durations[len(durations)/2].Nanoseconds()), "median-ns")
	b.ReportMetric(float64(durations[len(durations)*99/100].Nanoseconds()), "p99-ns")
}
