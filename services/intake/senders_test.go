package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
	"github.com/herald-health/herald/services/intake"
	"github.com/herald-health/herald/services/intake/internal/mllp"
)

// risIdentity is the identity of newSenders' good certificate ("ris").
var risIdentity = "spiffe://" + devca.TrustDomain + "/ns/herald/sa/ris"

// boundSenders starts intake with every listener (gRPC, MLLP, FHIR) over
// mutual TLS and the sender "ris" bound to trust RZZ only (the harness
// also serves RXF), its metrics read by the returned reader.
func boundSenders(t *testing.T) (senders, *harness, *sdkmetric.ManualReader) {
	t.Helper()
	s := newSenders(t)
	reader := sdkmetric.NewManualReader()
	h := startMetered(t, func(c *intake.Config) {
		c.MLLPTLS, c.FHIRTLS = s.server, s.server
		c.GRPC.TLSCertFile, c.GRPC.TLSKeyFile, c.GRPC.ClientCAFile = s.server.CertFile, s.server.KeyFile, s.server.CAFile
		c.SenderBindings = []intake.SenderBinding{{Identity: risIdentity, Trusts: []string{"RZZ"}}}
	}, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	return s, h, reader
}

// refusals sums herald.intake.sender_refusals for channel.
func refusals(t *testing.T, r *sdkmetric.ManualReader, channel string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "herald.intake.sender_refusals" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, ok := dp.Attributes.Value("channel"); ok && v.AsString() == channel {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// requireRefusalLogged: the refusal is in the log with the sender's
// identity and the trust claimed (the harness checks there is no patient
// data in it).
func requireRefusalLogged(t *testing.T, h *harness, channel, trust string) {
	t.Helper()
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, "sender not bound") && strings.Contains(line, `"channel":"`+channel+`"`) {
			require.Contains(t, line, `"trust":"`+trust+`"`)
			require.Contains(t, line, risIdentity)
			return
		}
	}
	t.Fatalf("no sender-binding refusal logged for %s in:\n%s", channel, h.logs.String())
}

// TestMLLPSenderBoundToItsTrusts: over MLLP the sender's certificate may
// send for RZZ; a message whose MSH-4 claims another trust (RXF) is
// answered AR with an ERR naming MSH-4, and nothing is recorded.
func TestMLLPSenderBoundToItsTrusts(t *testing.T) {
	s, h, reader := boundSenders(t)
	c, err := mllp.Dial(context.Background(), h.addrs["mllp"], s.client(t, s.good), 30*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "AA", send(t, c, variant(t, "M-BOUND")).code)

	ack := send(t, c, variant(t, "M-OTHER-TRUST", "|CRIS|RZZ|", "|CRIS|RXFRIS|"))
	require.Equal(t, "AR", ack.code, "%+v", ack)
	require.Len(t, ack.errs, 1)
	require.Contains(t, ack.errs[0], "MSH-4")
	require.Contains(t, ack.errs[0], "not allowed to send for trust RXF")
	require.Len(t, h.events(t), 1, "only the bound trust's message is on the log")
	require.Equal(t, int64(1), refusals(t, reader, "hl7"))
	requireRefusalLogged(t, h, "hl7", "RXF")
}

// TestFHIRSenderBoundToItsTrusts: a FHIR sender may post for its trust;
// a post to another trust's URL is 403 with an OperationOutcome, before
// the body is read.
func TestFHIRSenderBoundToItsTrusts(t *testing.T) {
	s, h, reader := boundSenders(t)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: s.client(t, s.good)}}
	defer client.CloseIdleConnections()
	post := func(tenant string) (int, map[string]any) {
		resp, err := client.Post("https://"+h.addrs["fhir"]+"/fhir/"+tenant+"/DiagnosticReport", "application/fhir+json",
			bytes.NewReader(example(t, "diagnosticreport_critical.json")))
		require.NoError(t, err)
		defer resp.Body.Close()
		var oo map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&oo))
		return resp.StatusCode, oo
	}
	code, _ := post("RZZ")
	require.Equal(t, http.StatusCreated, code)

	code, oo := post("RXF")
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, "OperationOutcome", oo["resourceType"])
	issue := oo["issue"].([]any)[0].(map[string]any)
	require.Equal(t, "forbidden", issue["code"])
	require.Contains(t, issue["diagnostics"], "not allowed to send for trust RXF")
	require.Len(t, h.events(t), 1, "only the bound trust's report is on the log")
	require.Equal(t, int64(1), refusals(t, reader, "fhir"))
	requireRefusalLogged(t, h, "fhir", "RXF")
}

// TestGRPCCallerBoundToItsTrusts: a gRPC caller (its service identity from
// the client certificate) may raise, amend and cancel for its trust; the
// same calls for another trust are PermissionDenied.
func TestGRPCCallerBoundToItsTrusts(t *testing.T) {
	s, h, reader := boundSenders(t)
	src, err := mtls.Load(s.good, mtls.Options{})
	require.NoError(t, err)
	conn, err := grpcserver.Dial(context.Background(), h.addrs["grpc"], telemetry.Nop("test"), grpcserver.ClientTLS(src, "127.0.0.1"))
	require.NoError(t, err)
	defer conn.Close()
	c := intakev1.NewIntakeServiceClient(conn)
	ctx := context.Background()
	report := func(tenant, id string) *intakev1.Report {
		return &intakev1.Report{
			Tenant: tenant, SourceSystem: "ris", SourceMessageId: id, Accession: "ACC-" + id,
			Patient:    &eventsv1.Patient{NhsNumber: "999 000 0018"},
			Referrer:   &eventsv1.Clinician{Id: "C1234567"},
			SourceFlag: &eventsv1.SourceFlag{Category: eventsv1.Category_CATEGORY_URGENT},
		}
	}
	_, err = c.RaiseAlert(ctx, &intakev1.RaiseAlertRequest{Report: report("RZZ", "G-BOUND")})
	require.NoError(t, err)

	_, err = c.RaiseAlert(ctx, &intakev1.RaiseAlertRequest{Report: report("RXF", "G-OTHER")})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "report.tenant")
	_, err = c.AmendAlert(ctx, &intakev1.AmendAlertRequest{Report: report("RXF", "G-OTHER-2")})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	_, err = c.CancelAlert(ctx, &intakev1.CancelAlertRequest{Tenant: "RXF", SourceSystem: "ris", SourceMessageId: "G-OTHER-3", Accession: "ACC-X"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "tenant")

	require.Len(t, h.events(t), 1, "only the bound trust's alert is on the log")
	require.Equal(t, int64(3), refusals(t, reader, "grpc"))
	requireRefusalLogged(t, h, "grpc", "RXF")
}

// TestSenderBindingsRequiredInProduction: a production intake without a
// sender-bindings file does not start.
func TestSenderBindingsRequiredInProduction(t *testing.T) {
	c := intake.DefaultConfig()
	c.Tenants = []intake.TenantSettings{{ODS: "RZZ"}}
	require.ErrorContains(t, c.Validate(), "setting sender-bindings-file is required in the production profile")
}

// TestEventKeysRequiredInProduction: a production intake without its event
// signing key and the key set does not start (forged events, #20 item 7).
func TestEventKeysRequiredInProduction(t *testing.T) {
	c := intake.DefaultConfig()
	c.Tenants = []intake.TenantSettings{{ODS: "RZZ"}}
	require.ErrorContains(t, c.Validate(), "events are not signed and verified (set event-signing-key-file, event-verify-keys-file)")
}
