package authz

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"

	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/authz/access"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/identity"
	"github.com/herald-health/herald/platform/logging"
)

// RegisterFlag binds -role-bindings-file (HERALD_ROLE_BINDINGS_FILE) to
// file: the same setting in every service.
func RegisterFlag(fs *flag.FlagSet, file *string) {
	fs.StringVar(file, "role-bindings-file", *file, "role-binding file (YAML): people's roles per trust and the systems allowed to call; reloaded when it changes "+
		"(none: in production only Herald services' own calls pass; in development authorization is off)")
}

// Configure is a composition root's security on gRPC: the server options
// that run authentication and then authorization (Table and the role
// bindings), and the bindings (nil without a file). authentication makes
// the first option from the bindings, the RoleBinder it binds people with
// (nil without a file: it binds from the token's claims); nil
// authentication, or one that returns nil, installs none.
//
//   - With a file, the Authorizer enforces Table with its bindings.
//   - Without one in production, it enforces Table with no bindings: only
//     Herald services' own calls pass (secure by default).
//   - Without one in development, authorization is off: every call runs as
//     DevelopmentCaller unless authentication put a caller (component
//     tests, `make run -insecure`). It is logged as a warning.
func Configure(file string, development bool, log *slog.Logger, authentication func(authn.RoleBinder) (grpcserver.Option, error)) ([]grpcserver.Option, *Source, error) {
	authorization, src, err := configure(file, development, log)
	if err != nil {
		return nil, nil, fmt.Errorf("authorization: %w", err)
	}
	var opts []grpcserver.Option
	if authentication != nil {
		var binder authn.RoleBinder
		if src != nil {
			binder = src
		}
		authOpt, err := authentication(binder)
		if err != nil {
			return nil, nil, fmt.Errorf("authentication: %w", err)
		}
		if authOpt != nil {
			opts = append(opts, authOpt)
		}
	}
	return append(opts, authorization), src, nil
}

func configure(file string, development bool, log *slog.Logger) (grpcserver.Option, *Source, error) {
	if log == nil {
		log = logging.Discard()
	}
	if file != "" {
		src, err := Load(file, Options{Development: development, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		return New(Table, src, log).ServerOption(), src, nil
	}
	if !development {
		log.Warn("no role-bindings-file: only Herald services' own calls are authorized; every person and sending system is refused")
		return New(Table, nil, log).ServerOption(), nil, nil
	}
	log.Warn("development profile without role-bindings-file: authorization is OFF, every call runs with every role")
	return Off(), nil, nil
}

// DevelopmentCaller is who every call is when authorization is off (the
// development profile without a role-binding file): a person with every
// role for every trust.
func DevelopmentCaller() identity.Caller {
	return identity.Caller{Person: &identity.Person{Issuer: "development", Subject: "authorization-off", DisplayName: "authorization off (development)",
		Roles: map[string][]identity.Role{identity.AllTrusts: access.AllRoles}}}
}

// Off is the server option of authorization switched off: a call without
// a caller runs as DevelopmentCaller. Development only (Configure).
func Off() grpcserver.Option {
	with := func(ctx context.Context) context.Context {
		ctx = context.WithValue(ctx, offKey{}, true)
		if _, ok := identity.FromContext(ctx); ok {
			return ctx
		}
		return identity.NewContext(ctx, DevelopmentCaller())
	}
	return grpcserver.WithInterceptors(
		[]grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(with(ctx), req)
		}},
		[]grpc.StreamServerInterceptor{func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, grpcserver.StreamWithContext(with(ss.Context()), ss))
		}})
}

type offKey struct{}

// IsOff reports whether ctx is a call that authorization was switched off
// for (Off: the development profile without a role-binding file). The
// handlers' own checks (an alert's trust and recipients) are skipped then
// too, so a development person signed in with a token acts as before
// authorization existed.
func IsOff(ctx context.Context) bool {
	off, _ := ctx.Value(offKey{}).(bool)
	return off
}
