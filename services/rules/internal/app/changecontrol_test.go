package app_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/identity"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	"github.com/herald-health/herald/services/rules/internal/adapters/kafkalog"
	"github.com/herald-health/herald/services/rules/internal/app"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// changeControl returns change control over a fresh policy-bundle topic on
// the test Kafka, and a function that opens another one on the same topic
// (a restarted replica) with its own registry.
func changeControl(t *testing.T, logs *logSink) (*app.ChangeControl, *app.Registry, func() (*app.ChangeControl, *app.Registry)) {
	t.Helper()
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = testinfra.KafkaBrokers(t)
	topic := testinfra.NewTopic(t, "rules-bundles", 1)
	w := eventlog.NewWriter(cfg, app.Producer, telemetry.Nop("test"))
	t.Cleanup(func() { _ = w.Close() })
	open := func() (*app.ChangeControl, *app.Registry) {
		log, closeIdle := kafkalog.NewBundleTopic(cfg, topic, w)
		t.Cleanup(closeIdle)
		reg := app.NewRegistry(time.Now)
		return app.NewChangeControl(log, reg, time.Now, logging.New(logs, -4, "rules")), reg
	}
	cc, reg := open()
	return cc, reg, open
}

func person(subject string, role identity.Role, trusts ...string) identity.Caller {
	roles := map[string][]identity.Role{}
	for _, t := range trusts {
		roles[t] = []identity.Role{role}
	}
	return identity.Caller{Person: &identity.Person{Issuer: "https://idp.test", Subject: subject, PersonID: "p-" + subject, Roles: roles}}
}

func TestProductionDirectoryBundleIsInForceOnlyOnceItsContentIsApproved(t *testing.T) {
	ctx := context.Background()
	logs := &logSink{}
	cc, reg, reopen := changeControl(t, logs)
	dir := demoDir(t)
	loader := app.NewLoader(os.DirFS(dir), reg, logging.New(logs, -4, "rules"), nil)
	loader.SetGate(cc.Gate)

	// Given the demo directory and no approval: nothing is in force, and
	// that is logged, not an error (the bundles may be approved later).
	require.NoError(t, cc.Refresh(ctx))
	require.NoError(t, loader.Load(ctx))
	require.Empty(t, reg.Snapshot().Tenants())
	require.Contains(t, logs.String(), "was not approved by a second person")

	// When RZY's content is proposed by one person and approved by another.
	groups, err := app.ReadBundles(os.DirFS(dir))
	require.NoError(t, err)
	rzy, err := bundle.Parse(groups["RZY"])
	require.NoError(t, err)
	alice, carol := person("alice", identity.RolePolicyAdmin, "RZY"), person("carol", identity.RoleSafetyLead, "RZY")
	p, err := cc.Propose(ctx, alice, rzy)
	require.NoError(t, err)
	require.Empty(t, reg.Snapshot().Tenants(), "a proposal alone changes nothing")
	_, _, err = cc.Approve(ctx, carol, "RZY", p.Hash)
	require.NoError(t, err)

	// Then RZY is in force (RZZ still is not), and an unapproved edit of
	// RZY on disk does not replace it.
	require.Equal(t, []string{"RZY"}, reg.Snapshot().Tenants())
	require.Equal(t, rzy.Hash, activeHash(reg, "RZY"))
	edit(t, dir, "RZY/bundle.yaml", `version: "2026.11.29-1"`, `version: "2026.11.29-9"`)
	require.NoError(t, loader.Load(ctx))
	require.Equal(t, rzy.Hash, activeHash(reg, "RZY"))

	// And a replica started afterwards puts the same approved bundle in
	// force from the log, and nothing else.
	cc2, reg2 := reopen()
	require.NoError(t, cc2.Sync(ctx))
	require.Equal(t, []string{"RZY"}, reg2.Snapshot().Tenants())
	require.Equal(t, rzy.Hash, activeHash(reg2, "RZY"))
}

func TestChangeControlRefusesWithoutAPersonOrRoleAndRecordsNothing(t *testing.T) {
	ctx := context.Background()
	cc, reg, _ := changeControl(t, &logSink{})
	groups, err := app.ReadBundles(os.DirFS(demoDir(t)))
	require.NoError(t, err)
	rzy, err := bundle.Parse(groups["RZY"])
	require.NoError(t, err)

	_, err = cc.Propose(ctx, identity.Caller{Service: "spiffe://herald/intake"}, rzy)
	require.ErrorContains(t, err, "needs a verified person")
	_, err = cc.Propose(ctx, person("dave", identity.RolePolicyAdmin, "RZZ"), rzy)
	require.ErrorContains(t, err, "holds neither policy-admin nor safety-lead for trust RZY")
	pending, err := cc.Pending(ctx, person("carol", identity.RoleSafetyLead, "RZY"), "RZY")
	require.NoError(t, err)
	require.Empty(t, pending)
	require.Empty(t, reg.Snapshot().Tenants())
}
