package intake_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/testinfra"
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
