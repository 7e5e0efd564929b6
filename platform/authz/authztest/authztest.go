// Package authztest is a stand-in for authentication in tests of the
// services' authorization: the client names a token subject in metadata
// (As), the server binds it with the role bindings and puts the caller in
// the context, as authentication does after verifying a token. It verifies
// nothing and is never wired in a composition root outside tests.
package authztest

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/identity"
)

// SubjectKey is the metadata key naming the test caller's subject.
const SubjectKey = "x-herald-test-subject"

// TokenIDKey is the metadata key naming the test caller's token id (jti).
const TokenIDKey = "x-herald-test-token-id"

// Binder fills a person's id and roles (authz.Source).
type Binder interface {
	Bind(ctx context.Context, p *identity.Person) error
}

// As returns ctx making calls as the person with token subject sub.
func As(ctx context.Context, sub string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, SubjectKey, sub)
}

// AsWithToken is As with the id of the access token (jti) the person
// presents: a retried call carries the same token id.
func AsWithToken(ctx context.Context, sub, tokenID string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, SubjectKey, sub, TokenIDKey, tokenID)
}

// Authentication returns the server option of the stand-in: a call whose
// metadata names a subject runs as that person bound by b; a call naming
// none carries no caller (authorization then sees the client certificate,
// if any).
func Authentication(b Binder) grpcserver.Option {
	with := func(ctx context.Context) (context.Context, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		v := md.Get(SubjectKey)
		if len(v) != 1 {
			return ctx, nil
		}
		p := &identity.Person{Issuer: "https://idp.test", Subject: v[0], DisplayName: v[0]}
		if jti := md.Get(TokenIDKey); len(jti) == 1 {
			p.TokenID = jti[0]
		}
		if err := b.Bind(ctx, p); err != nil {
			return ctx, err
		}
		return identity.NewContext(ctx, identity.Caller{Person: p}), nil
	}
	return grpcserver.WithInterceptors(
		[]grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, err := with(ctx)
			if err != nil {
				return nil, err
			}
			return h(ctx, req)
		}},
		[]grpc.StreamServerInterceptor{func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ctx, err := with(ss.Context())
			if err != nil {
				return err
			}
			return h(srv, grpcserver.StreamWithContext(ctx, ss))
		}})
}
