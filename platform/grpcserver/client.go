package grpcserver

import (
	"context"
	"flag"
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

// ClientConfig is where one Herald gRPC service is called: the same two
// flags for every peer (RegisterFlags), e.g. -rules-addr and
// -rules-server-name. The caller's identity and the CA bundle that
// verifies the peer are the service's own (its gRPC server's Source, see
// Server.TLS), or a tool's (mtls.Files.RegisterFlags).
type ClientConfig struct {
	// Addr is the peer's gRPC target: host:port, or dns:///host:port for
	// every address of a headless Service.
	Addr string
	// ServerName is the name the peer's certificate must carry when the
	// host in Addr is not one of its names (empty: the host in Addr).
	ServerName string
}

// RegisterFlags binds -<peer>-addr and -<peer>-server-name (environment
// fallback HERALD_<PEER>_ADDR, HERALD_<PEER>_SERVER_NAME). The values
// already in c are the defaults.
func (c *ClientConfig) RegisterFlags(fs *flag.FlagSet, peer string) {
	fs.StringVar(&c.Addr, peer+"-addr", c.Addr, "gRPC address of the "+peer+" service (host:port or dns:///host:port)")
	fs.StringVar(&c.ServerName, peer+"-server-name", c.ServerName, "name the "+peer+" service's certificate must carry, when the host in "+peer+"-addr is not one of its names")
}

// Validate names the setting at fault.
func (c ClientConfig) Validate(peer string) error {
	if c.Addr == "" {
		return fmt.Errorf("setting %s-addr is required", peer)
	}
	return nil
}

// ClientTLS makes Dial use mutual TLS with src: it presents src's
// certificate (the calling service's identity) and verifies the server's
// certificate against src's CA bundle and the target's host name (or
// serverName, when not empty: for a target whose host is not in the
// server's certificate). Every new connection uses the material current
// at its handshake, so certificates rotate without a restart.
//
// A nil src leaves the connection plaintext: what a service started with
// -insecure (no gRPC TLS files, so Server.TLS is nil) does; Security.Check
// refuses that configuration outside development.
func ClientTLS(src *mtls.Source, serverName string) DialOption {
	return func(o *dialOptions) {
		if src != nil {
			o.creds = mtls.GRPCClientCredentials(src, serverName)
		}
	}
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
