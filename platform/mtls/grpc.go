package mtls

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
)

// GRPCClientCredentials returns gRPC transport credentials for calls made
// with src: every handshake builds its configuration afresh from src's
// current material (grpc-go's own TLS credentials fix theirs once), so
// the client certificate and the CA bundle rotate without a restart. The
// server's certificate must carry serverName, or the host of the
// authority dialled when serverName is empty.
func GRPCClientCredentials(src *Source, serverName string) credentials.TransportCredentials {
	return &grpcCreds{src: src, serverName: serverName}
}

type grpcCreds struct {
	src        *Source
	serverName string
}

func (c *grpcCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	name := c.serverName
	if name == "" {
		name = authority
		if host, _, err := net.SplitHostPort(authority); err == nil {
			name = host
		}
	}
	return credentials.NewTLS(c.src.ClientConfig(name)).ClientHandshake(ctx, authority, conn)
}

func (c *grpcCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("mtls: client credentials cannot serve")
}

func (c *grpcCreds) Info() credentials.ProtocolInfo {
	return credentials.NewTLS(c.src.ClientConfig(c.serverName)).Info()
}

func (c *grpcCreds) Clone() credentials.TransportCredentials {
	return &grpcCreds{src: c.src, serverName: c.serverName}
}

// OverrideServerName sets the name verified (deprecated in grpc-go, kept
// for its interface).
func (c *grpcCreds) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}
