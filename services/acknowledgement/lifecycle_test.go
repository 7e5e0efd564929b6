package acknowledgement_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/testinfra"
	"github.com/herald-health/herald/services/acknowledgement"
)

// A New that fails after binding its gRPC listener releases it: the port
// can be bound again at once.
func TestFailedNewReleasesItsListeners(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.GRPC.Addr = testinfra.FreePort(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	cfg.HTTPAddr = busy.Addr().String() // the last listener cannot bind

	_, err = acknowledgement.New(context.Background(), cfg, acknowledgement.Deps{})
	require.ErrorContains(t, err, "http-addr")
	l, err := net.Listen("tcp", cfg.GRPC.Addr)
	require.NoError(t, err, "gRPC port still bound after a failed New")
	require.NoError(t, l.Close())
}
