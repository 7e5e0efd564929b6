// Package authz is Herald's authorization (issue #20, item 3): who may
// call which gRPC method, for which trust.
//
//   - Table says, for every method of the four services (and the health
//     and reflection services every server carries), which roles and which
//     Herald service identities may call it and where the per-trust check
//     is made. A method not in the table is refused (deny by default).
//   - The role-binding file (File, loaded by Load and re-read when it
//     changes) binds token subjects, emails and role claims to a directory
//     person id and roles per trust, and certificate identities of systems
//     that call on their own account to roles. Source.Bind is the
//     RoleBinder authentication calls.
//   - Authorizer's interceptors, installed after authentication with
//     grpcserver.WithInterceptors, enforce the table on every call from the
//     identity.Caller authentication put in the context.
//   - The per-trust decisions the handlers make (an alert's recipients,
//     lists filtered to the caller's trusts, contact details) are pure
//     functions in access.
//
// docs/authorization.md documents the table (generated from it and
// checked by a test), the file and the development identities.
package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/authz/access"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/identity"
	"github.com/herald-health/herald/platform/logging"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
)

// ServiceBinder finds the person a certificate identity calls as when it
// calls without a person (Source and Bindings implement it).
type ServiceBinder interface {
	Service(id string) (*identity.Person, bool)
}

// Authorizer enforces a table of rules on every gRPC call.
type Authorizer struct {
	rules    map[string]Rule
	services ServiceBinder
	log      *slog.Logger
}

// New returns an Authorizer of rules (normally Table) binding service
// identities through services (nil: none is bound).
func New(rules map[string]Rule, services ServiceBinder, log *slog.Logger) *Authorizer {
	if log == nil {
		log = logging.Discard()
	}
	return &Authorizer{rules: rules, services: services, log: log}
}

// ServerOption installs the Authorizer's interceptors on a grpcserver,
// after those given before it (authentication).
func (a *Authorizer) ServerOption() grpcserver.Option {
	return grpcserver.WithInterceptors([]grpc.UnaryServerInterceptor{a.Unary}, []grpc.StreamServerInterceptor{a.Stream})
}

// Unary is the unary server interceptor.
func (a *Authorizer) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.Authorize(ctx, info.FullMethod, req)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is the stream server interceptor. Herald's streams are
// server-streaming: the request is read (by the handler) after the call is
// authorized, so a TrustRequest check is not available on streams and the
// table uses TrustList for them.
func (a *Authorizer) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.Authorize(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return err
	}
	return handler(srv, grpcserver.StreamWithContext(ctx, ss))
}

// Authorize decides one call of method with request req (nil for a
// stream) and returns the context the handler runs in: it carries the
// caller (with the person a bound service identity calls as). Errors are
// gRPC statuses: Unauthenticated without a caller, PermissionDenied for a
// method not in the table or a role or trust the caller does not hold,
// InvalidArgument for a request that names no trust where one is needed.
func (a *Authorizer) Authorize(ctx context.Context, method string, req any) (context.Context, error) {
	rule, known := a.rules[method]
	if known && rule.Public {
		return ctx, nil
	}
	caller, ok := identity.FromContext(ctx)
	if !ok || (caller.Person == nil && caller.Service == "") {
		// Authentication put no caller: the verified client certificate
		// is the caller (a service on its own account).
		id, found := grpcserver.PeerIdentity(ctx)
		if !found {
			return ctx, status.Errorf(codes.Unauthenticated, "%s: no verified caller (a client certificate, and a bearer token for a person)", method)
		}
		caller = identity.Caller{Service: id}
	}
	if caller.Person == nil && a.services != nil {
		if p, bound := a.services.Service(caller.Service); bound {
			caller.Person = p
		}
	}
	ctx = identity.NewContext(ctx, caller)
	if !known {
		a.log.WarnContext(ctx, "authorization: method not in the table, refused", slog.String("method", method))
		return ctx, status.Errorf(codes.PermissionDenied, "%s: not in the authorization table (deny by default)", method)
	}
	if err := Decide(rule, caller, req); err != nil {
		a.log.InfoContext(ctx, "authorization: call refused", slog.String("method", method),
			slog.String("service", caller.Service), slog.String("subject", subject(caller)), slog.String("reason", err.Error()))
		return ctx, fmt.Errorf("%s: %w", method, err)
	}
	return ctx, nil
}

func subject(c identity.Caller) string {
	if c.Person == nil {
		return ""
	}
	return c.Person.Subject
}

// ErrNoTrust is a request that names no trust where the rule needs one.
var ErrNoTrust = errors.New("the request names no trust")

// Decide decides one call of a rule's method by caller with request req
// (nil: not available). The error is a gRPC status.
func Decide(rule Rule, caller identity.Caller, req any) error {
	if rule.Public || rule.AnyCaller {
		return nil
	}
	// A Herald service's own call: any trust (it serves them all).
	if caller.Person == nil {
		if name := access.ServiceName(caller.Service); name != "" && contains(rule.Services, name) {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "the service identity %q may not make this call on its own account", caller.Service)
	}
	p := caller.Person
	if !access.HoldsAnywhere(p, rule.Roles...) {
		return status.Errorf(codes.PermissionDenied, "needs one of the roles %v", rule.Roles)
	}
	if rule.Trust == TrustRequest && req != nil {
		trust := RequestTrust(req)
		if trust == "" {
			return status.Error(codes.InvalidArgument, "tenant: is required (the trust's ODS code)")
		}
		if !access.HasAny(p, trust, rule.Roles...) {
			return status.Errorf(codes.PermissionDenied, "needs one of the roles %v for trust %s", rule.Roles, trust)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// RequestTrust is the trust a request names: its tenant, or its report's
// tenant ("" when it names none).
func RequestTrust(req any) string {
	switch r := req.(type) {
	case *intakev1.RaiseAlertRequest:
		return r.GetReport().GetTenant()
	case *intakev1.AmendAlertRequest:
		return r.GetReport().GetTenant()
	case interface{ GetTenant() string }:
		return r.GetTenant()
	}
	return ""
}
