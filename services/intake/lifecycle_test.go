package intake_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
	"github.com/herald-health/herald/services/intake"
)

// A New that fails after binding some listeners releases them: the ports
// can be bound again at once (a restart, or the next attempt, finds them
// free).
func TestFailedNewReleasesItsListeners(t *testing.T) {
	h := start(t, nil)
	cfg := h.cfg
	cfg.GRPC.Addr, cfg.MLLPAddr = testinfra.FreePort(t), testinfra.FreePort(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	cfg.FHIRAddr = busy.Addr().String() // the last listener cannot bind

	_, err = intake.New(context.Background(), cfg, intake.Deps{})
	require.ErrorContains(t, err, "fhir-addr")
	for _, addr := range []string{cfg.GRPC.Addr, cfg.MLLPAddr} {
		l, err := net.Listen("tcp", addr)
		require.NoError(t, err, "port %s still bound after a failed New", addr)
		require.NoError(t, l.Close())
	}
}

// A gRPC request over intake's receive limit (512 KiB: the event must fit
// a Kafka record) is refused before it is handled, and nothing is
// appended.
func TestGRPCRequestOverTheReceiveLimitIsRefused(t *testing.T) {
	h := start(t, nil)
	conn, err := grpcserver.Dial(context.Background(), h.addrs["grpc"], telemetry.Nop("test"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = intakev1.NewIntakeServiceClient(conn).RaiseAlert(context.Background(), &intakev1.RaiseAlertRequest{Report: &intakev1.Report{
		Tenant: "RZZ", SourceSystem: "ris", SourceMessageId: "BIG-1", Accession: "ACC-BIG-1",
		ReportText: strings.Repeat("x", intake.MaxGRPCRequestBytes+1),
	}})
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	require.Empty(t, h.events(t))
}
