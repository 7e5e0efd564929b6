package rules_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/authz"
	"github.com/herald-health/herald/platform/authz/authztest"
	"github.com/herald-health/herald/platform/authz/devbindings"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
)

// TestDirectoryContactDetailsOnlyForOperatorsAndPolicyAdmins: through the
// gRPC API with the development role bindings, ResolveTargets gives a
// clinician who is on call but no phone number or email address; an
// operator or policy administrator of the trust gets them; a policy
// administrator of another trust is refused; the bundle (its directory)
// is refused to a clinician and to the network-wide safety lead.
func TestDirectoryContactDetailsOnlyForOperatorsAndPolicyAdmins(t *testing.T) {
	e := newEnv(t)
	file, err := devbindings.Write(t.TempDir(), false)
	require.NoError(t, err)
	e.cfg.RoleBindingsFile = file
	src, err := authz.Load(file, authz.Options{})
	require.NoError(t, err)
	e.authn = authztest.Authentication(src)
	addr, _ := e.start(t, e.cfg)
	c := client(t, addr)
	ctx := context.Background()
	as := func(sub string) context.Context { return authztest.As(ctx, sub) }

	monday := time.Date(2026, 1, 12, 10, 0, 0, 0, time.UTC)
	req := &rulesv1.ResolveTargetsRequest{Tenant: "RZZ", AlertId: "a", At: timestamppb.New(monday),
		Targets: []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_ONCALL_ROLE, Ref: "consultant-radiologist"}}}
	var res *rulesv1.ResolveTargetsResponse
	require.Eventually(t, func() bool {
		res, err = c.ResolveTargets(as("clinician-a"), req)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the demo bundle is not loaded: %v", err)
	require.Len(t, res.GetRecipients(), 1)
	require.Equal(t, "rzz-dr-evans", res.GetRecipients()[0].GetRecipient().GetPersonId(), "a clinician learns who is on call")
	require.Empty(t, res.GetRecipients()[0].GetContactPoints(), "a clinician got staff contact details")

	for _, sub := range []string{"operator-a", "policy-admin-a"} {
		res, err := c.ResolveTargets(as(sub), req)
		require.NoError(t, err, sub)
		require.NotEmpty(t, res.GetRecipients()[0].GetContactPoints(), "%s gets the contact points", sub)
	}
	_, err = c.ResolveTargets(as("policy-admin-b"), req)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "trust B's policy admin resolves trust A's directory: %v", err)
	_, err = c.ResolveTargets(ctx, req)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "no caller: %v", err)

	for _, sub := range []string{"clinician-a", "safety-lead", "policy-admin-b"} {
		_, err := c.GetActiveBundle(as(sub), &rulesv1.GetActiveBundleRequest{Tenant: "RZZ"})
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%s reads trust A's bundle: %v", sub, err)
	}
	active, err := c.GetActiveBundle(as("policy-admin-a"), &rulesv1.GetActiveBundleRequest{Tenant: "RZZ"})
	require.NoError(t, err)
	require.NotEmpty(t, active.GetFiles())
	_, err = c.LoadBundle(as("clinician-a"), &rulesv1.LoadBundleRequest{Files: active.GetFiles()})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a clinician loads a bundle: %v", err)
}
