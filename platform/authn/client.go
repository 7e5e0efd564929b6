package authn

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// TokenSource returns the access token to call with.
type TokenSource func(ctx context.Context) (string, error)

// StaticToken always returns tok.
func StaticToken(tok string) TokenSource {
	return func(context.Context) (string, error) { return tok, nil }
}

// Bearer returns per-call credentials that send the source's token as
// "authorization: Bearer <token>" (grpc.WithPerRPCCredentials). They do not
// insist on TLS, so that a development system on loopback works; the
// production profile refuses plaintext hops anyway.
func Bearer(src TokenSource) credentials.PerRPCCredentials { return bearerCreds(src) }

type bearerCreds TokenSource

func (b bearerCreds) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := b(ctx)
	if err != nil || tok == "" {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (bearerCreds) RequireTransportSecurity() bool { return false }
