package domain_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/services/intake/internal/domain"
)

func TestServiceRequestIDFetchesOnlyPlainReferencesToTheTrustsServer(t *testing.T) {
	const base = "https://fhir.rzz.example.nhs.uk/R4"
	tests := []struct {
		ref, want string
		ok        bool
	}{
		{ref: "ServiceRequest/sr-ord778899", want: "sr-ord778899", ok: true},
		{ref: base + "/ServiceRequest/sr.1", want: "sr.1", ok: true},
		{ref: "#order"},
		{ref: "urn:uuid:00000000-0000-4000-8000-000000000001"},
		{ref: "https://elsewhere.example/ServiceRequest/sr1"},
		{ref: "ServiceRequest/../Patient/p1"},
		{ref: "ServiceRequest/sr1/_history/2"},
		{ref: "ServiceRequest/sr1?_format=xml"},
		{ref: "Patient/p1"},
		{ref: "ServiceRequest/"},
	}
	for _, tt := range tests {
		id, ok := domain.ServiceRequestID(tt.ref, base)
		require.Equal(t, tt.ok, ok, tt.ref)
		require.Equal(t, tt.want, id, tt.ref)
	}
}

func TestDirectoryRefusesAFHIRServerThatIsNoBaseURL(t *testing.T) {
	for _, bad := range []string{"fhir.example", "ftp://fhir.example/R4", "https:///R4", "https://fhir.example/R4?x=1"} {
		_, err := domain.NewDirectory([]domain.TenantSettings{{ODS: "RZZ", FHIRServer: bad}})
		require.ErrorContains(t, err, "tenants[0].fhir_server", bad)
	}
	_, err := domain.NewDirectory([]domain.TenantSettings{{ODS: "RZZ", FHIRServer: "https://fhir.example/R4"}})
	require.NoError(t, err)
}

// FuzzMapFHIR: whatever JSON arrives, mapping answers a FHIRError or a
// submission whose event can be recorded; it never panics.
func FuzzMapFHIR(f *testing.F) {
	for _, name := range []string{"diagnosticreport_critical.json", "diagnosticreport_contained_order.json", "bundle_critical_alert.json"} {
		b, err := os.ReadFile("../../testdata/" + name)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte(`{"resourceType":"DiagnosticReport","status":"final","code":{},"basedOn":[{"reference":"#x"}],"contained":[{"resourceType":"ServiceRequest"}]}`))
	dir, err := domain.NewDirectory([]domain.TenantSettings{{ODS: "RZZ", TriggerPhrases: []string{"critical alert"}}})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := domain.MapFHIR(data, "RZZ", dir, eventlog.ID)
		if err != nil {
			var fe *domain.FHIRError
			require.ErrorAs(t, err, &fe)
			return
		}
		dec, err := domain.Decide(s, dir, domain.DefaultLimits(), eventlog.ID, now, "intake")
		if err != nil || dec.Event == nil {
			return
		}
		if _, err := proto.Marshal(dec.Event); err != nil {
			t.Fatalf("event does not marshal: %v", err)
		}
	})
}
