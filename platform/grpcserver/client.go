package grpcserver

import (
	"context"
	"fmt"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/telemetry"
)

// DialOption changes how Dial connects.
type DialOption func(*dialOptions)

type dialOptions struct {
	creds credentials.TransportCredentials
}

// ClientTLS makes Dial use mutual TLS with src: it presents src's
// certificate (the calling service's identity) and verifies the server's
// certificate against src's CA bundle and the target's host name (or
// serverName, when not empty: for a target whose host is not in the
// server's certificate). Every new connection uses the material current
// at its handshake, so certificates rotate without a restart.
func ClientTLS(src *mtls.Source, serverName string) DialOption {
	return func(o *dialOptions) { o.creds = mtls.GRPCClientCredentials(src, serverName) }
}

// Dial connects to a Herald gRPC service on target, with trace
// propagation. Calls are spread round-robin over every address the target
// resolves to (a Kubernetes headless Service: "dns:///rules-headless:9090").
// Without ClientTLS the connection is plaintext: for development with the
// -insecure flag only.
func Dial(_ context.Context, target string, tel *telemetry.Telemetry, options ...DialOption) (*grpc.ClientConn, error) {
	o := dialOptions{creds: insecure.NewCredentials()}
	for _, opt := range options {
		opt(&o)
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(o.creds),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider),
			otelgrpc.WithMeterProvider(tel.MeterProvider),
			otelgrpc.WithPropagators(tel.Propagator),
		)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return conn, nil
}

// PeerIdentity returns the service identity of the caller of the gRPC call
// in ctx, from the client certificate it presented and the server verified:
// the certificate's first URI SAN (a SPIFFE ID) or else its first DNS SAN.
// ok is false for a plaintext call or a call without a certificate.
// Authorization decides from it which service is calling.
func PeerIdentity(ctx context.Context) (id string, ok bool) {
	p, found := peer.FromContext(ctx)
	if !found || p.AuthInfo == nil {
		return "", false
	}
	info, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS {
		return "", false
	}
	return mtls.Identity(info.State)
}
