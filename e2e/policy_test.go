package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/e2e/harness"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/mtls"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
)

// rulesClient calls the system's rules service with the harness's service
// certificate: a service identity (a sending system and an operator), no
// person; a call made for a person carries their token (System.As).
func rulesClient(t *testing.T, sys *harness.System) rulesv1.RulesServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(sys.Addrs.RulesGRPC, grpc.WithTransportCredentials(mtls.GRPCClientCredentials(sys.TLS.Client, "")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return rulesv1.NewRulesServiceClient(conn)
}

// changedBundle is the e2e trust's bundle with a new version.
func changedBundle(t *testing.T, sys *harness.System, version string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(sys.BundleDir + "/RZZ/bundle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), `version: "e2e-1"`, `version: "`+version+`"`, 1)
	return map[string][]byte{"RZZ/bundle.yaml": []byte(y)}
}

func bundleEvents(t *testing.T, sys *harness.System) []*eventsv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*eventsv1.Event
	err := eventlog.ReadTopic(ctx, sys.Log, sys.BundleTopic, func(_, value []byte, _ int, _ int64) error {
		var ev eventsv1.Event
		if err := proto.Unmarshal(value, &ev); err != nil {
			return err
		}
		out = append(out, &ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// One person alone cannot change a trust's policy (before #20 LoadBundle
// replaced a trust's live policy with no credentials and no record). A
// policy administrator signed in at the system's provider proposes a
// bundle: it is recorded and not in force, and their own approval is
// refused (the two-person rule). A second administrator's approval puts
// it in force.
func TestSecurityOnePersonCannotActivateABundle(t *testing.T) {
	sys := start(t)
	c := rulesClient(t, sys)
	ctx := context.Background()
	files := changedBundle(t, sys, "e2e-forged")
	var req []*rulesv1.BundleFile
	for name, content := range files {
		req = append(req, &rulesv1.BundleFile{Name: name, Content: content})
	}
	hash := harness.BundleHash(files)
	admin := sys.As(t, harness.PolicyAdmin)
	if _, err := c.ProposeBundle(ctx, &rulesv1.ProposeBundleRequest{Files: req}, admin); err != nil {
		t.Fatalf("ProposeBundle: %v", err)
	}
	_, err := c.ApproveBundle(ctx, &rulesv1.ApproveBundleRequest{Tenant: "RZZ", ContentHash: hash}, admin)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "two-person") {
		t.Fatalf("ApproveBundle by its proposer: got %v, want PermissionDenied naming the two-person rule", err)
	}
	// The harness's certificate reads as an operator.
	active, err := c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZZ"})
	if err != nil {
		t.Fatal(err)
	}
	if v := active.GetRef().GetVersion(); v != "e2e-1" {
		t.Fatalf("bundle in force is %s, want the seed e2e-1", v)
	}
	evs := bundleEvents(t, sys)
	if len(evs) != 1 || evs[0].GetBundleProposed() == nil {
		t.Fatalf("the policy-bundle topic holds %d events, want the proposal alone", len(evs))
	}
	if by := evs[0].GetBundleProposed().GetProposer(); by.GetSubject() != harness.PolicyAdmin.ID || by.GetIssuer() != sys.IDP.Issuer {
		t.Errorf("proposed by %v, want %s of the system's provider", by, harness.PolicyAdmin.ID)
	}

	if _, err := c.ApproveBundle(ctx, &rulesv1.ApproveBundleRequest{Tenant: "RZZ", ContentHash: hash}, sys.As(t, harness.PolicyAdmin2)); err != nil {
		t.Fatalf("ApproveBundle by a second administrator: %v", err)
	}
	harness.Eventually(t, 30*time.Second, func() bool {
		active, err := c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZZ"})
		return err == nil && active.GetRef().GetVersion() == "e2e-forged"
	}, func() string { return "the bundle approved by a second person is not in force" })
}

// A bundle approved by a second person (recorded on the policy-bundle
// topic) is put in force by the running rules service, and the next alert
// is routed under that version.
func TestSecurityApprovedBundleIsInForceForTheNextAlert(t *testing.T) {
	sys := start(t)
	c := rulesClient(t, sys)
	ctx := context.Background()
	files := changedBundle(t, sys, "e2e-2")
	harness.SeedApprovedBundle(t, sys.SignedAs(eventsign.ServiceRules), sys.BundleTopic, "RZZ", files)
	harness.Eventually(t, 30*time.Second, func() bool {
		active, err := c.GetActiveBundle(ctx, &rulesv1.GetActiveBundleRequest{Tenant: "RZZ"})
		return err == nil && active.GetRef().GetVersion() == "e2e-2"
	}, func() string { return "the approved bundle e2e-2 is not in force" })

	send(t, sys, oru("MSG-POL-1", "ACC-POL-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 60*time.Second)
	var routed *eventsv1.Event
	harness.Eventually(t, 60*time.Second, func() bool {
		for _, ev := range sys.Events(t, id) {
			if ev.GetAlertRouted() != nil {
				routed = ev
				return true
			}
		}
		return false
	}, func() string { return "no AlertRouted" })
	if v, h := routed.GetPolicy().GetVersion(), routed.GetPolicy().GetContentHash(); v != "e2e-2" || h != harness.BundleHash(files) {
		t.Fatalf("alert routed under %s (%s), want e2e-2 (%s)", v, h, harness.BundleHash(files))
	}
}
