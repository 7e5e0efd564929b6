package ctl

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/authn/authntest"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/sealing"
	"github.com/herald-health/herald/platform/testinfra"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

// TestKeysDestroyRecordsTheDestructionThenShredsTheTrust drives heraldctl
// keys as an operator would: a KEK, a key for two trusts, a rotation; a
// destroy without a sign-in (even with a typed -by), with a sign-in another
// issuer signed, without -confirm, or with -by beside a sign-in is refused
// and records nothing; the signed-in records manager's destroy records
// DataKeyDestroyed (who from the verified token: Herald id, subject,
// issuer, assurance level, name; which keys) on the audit intake and then
// no detail of the trust, sealed under either of its keys, opens any more;
// the other trust's still do; list shows who destroyed what and holds no
// key material. In the development profile a typed -by is recorded, marked
// unverified.
func TestKeysDestroyRecordsTheDestructionThenShredsTheTrust(t *testing.T) {
	dir := t.TempDir()
	kekFile, keyring := filepath.Join(dir, "kek"), filepath.Join(dir, "keyring.json")
	brokers := strings.Join(testinfra.KafkaBrokers(t), ",")
	intake := testinfra.NewTopic(t, "audit-intake", 1)

	mustRun := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCtl(args...)
		if code != 0 {
			t.Fatalf("heraldctl %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	mustRun("keys", "kek", "-kek-file", kekFile)
	if code, _, _ := runCtl("keys", "kek", "-kek-file", kekFile); code == 0 {
		t.Error("keys kek overwrote an existing key-encryption key")
	}
	mustRun("keys", "rotate", "-keyring-file", keyring, "-kek-file", kekFile, "RZZ")
	mustRun("keys", "rotate", "-keyring-file", keyring, "-kek-file", kekFile, "RZY")

	kek, err := sealing.LoadFileKEK(kekFile)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := sealing.Open(keyring, kek)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seal := func(trust, alert string) *eventsv1.AlertDetails {
		d := &eventsv1.AlertDetails{Patient: &eventsv1.Patient{NhsNumber: "9990000018"}, ReportText: "SECRET-REPORT-TEXT"}
		if err := ring.Seal(ctx, trust, alert, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	old := seal("RZZ", "a1")
	if out := mustRun("keys", "rotate", "-keyring-file", keyring, "-kek-file", kekFile, "RZZ"); !strings.Contains(out, "RZZ/2") {
		t.Errorf("rotate: %q, want RZZ/2", out)
	}
	fresh, other := seal("RZZ", "a2"), seal("RZY", "b1")
	if fresh.GetSealed().GetKeyId() != "RZZ/2" {
		t.Errorf("sealed under %s after the rotation", fresh.GetSealed().GetKeyId())
	}

	// Nobody signed in (no HERALD_CTL_TOKEN, no kept login).
	is := authntest.NewIssuer(t)
	t.Setenv("HERALD_CTL_TOKEN_FILE", filepath.Join(dir, "no-login.json"))
	t.Setenv("HERALD_CTL_TOKEN", "")
	t.Setenv("HERALD_CTL_ISSUER", is.URL)
	t.Setenv("HERALD_PROFILE", "")
	base := []string{"keys", "destroy", "-keyring-file", keyring, "-brokers", brokers, "-intake-topic", intake}
	if code, _, errOut := runCtl(append(base, "-confirm", "RZZ", "RZZ")...); code == 0 || !strings.Contains(errOut, "signed-in person") {
		t.Errorf("destroy without a sign-in: exit %d %q, want a refusal asking for a sign-in", code, errOut)
	}
	if code, _, errOut := runCtl(append(base, "-by", "records-manager-1", "-confirm", "RZZ", "RZZ")...); code == 0 || !strings.Contains(errOut, "signed-in person") {
		t.Errorf("destroy by a typed name in the production profile: exit %d %q, want a refusal asking for a sign-in", code, errOut)
	}
	// A token another issuer signed, naming the records manager.
	forger := authntest.NewIssuer(t)
	t.Setenv("HERALD_CTL_TOKEN", forger.Token(t, "5f0c-records-manager", nil, func(c *authntest.Claims) { c.Issuer = is.URL }))
	if code, _, errOut := runCtl(append(base, "-confirm", "RZZ", "RZZ")...); code == 0 || !strings.Contains(errOut, "does not verify") {
		t.Errorf("destroy with a forged sign-in: exit %d %q, want a refusal", code, errOut)
	}
	// The records manager signed in: -confirm is still needed, and -by is
	// not taken beside a sign-in.
	t.Setenv("HERALD_CTL_TOKEN", is.Token(t, "5f0c-records-manager", nil, func(c *authntest.Claims) {
		c.Pers, c.Name, c.ACR = "rzz-records-manager", "Robin Records", "AAL2_OR_ABOVE"
	}))
	if code, _, _ := runCtl(append(base, "RZZ")...); code != 2 {
		t.Errorf("destroy without -confirm: exit %d, want 2", code)
	}
	if code, _, errOut := runCtl(append(base, "-by", "someone-else", "-confirm", "RZZ", "RZZ")...); code != 2 || !strings.Contains(errOut, "rzz-records-manager") {
		t.Errorf("destroy signed in with -by: exit %d %q, want 2 naming the signed-in person", code, errOut)
	}
	for _, d := range []*eventsv1.AlertDetails{old, fresh} {
		if _, err := ring.Open(ctx, "RZZ", map[bool]string{true: "a1", false: "a2"}[d == old], d); err != nil {
			t.Fatalf("a refused destroy destroyed something: %v", err)
		}
	}
	out := mustRun(append(base, "-confirm", "RZZ", "RZZ")...)
	if !strings.Contains(out, "RZZ/1, RZZ/2") {
		t.Errorf("destroy said %q", out)
	}

	// The destruction is on the audit intake, with who (the verified
	// sign-in) and which keys.
	recorded := auditIntake(t, intake)
	if len(recorded) != 1 {
		t.Fatalf("audit intake holds %d records, want one DataKeyDestroyed (refused destroys record nothing): %v", len(recorded), recorded)
	}
	r, by := recorded[0], recorded[0].GetActor()
	if r.GetEventType() != audit.TypeDataKeyDestroyed || r.GetTrust() != "RZZ" || !strings.Contains(r.GetDetail(), "RZZ/1,RZZ/2") ||
		!strings.Contains(r.GetDetail(), "decided by Robin Records") {
		t.Errorf("audit record %v, want DataKeyDestroyed of RZZ/1,RZZ/2 decided by Robin Records", r)
	}
	if by.GetPersonId() != "rzz-records-manager" || by.GetSubject() != "5f0c-records-manager" || by.GetIssuer() != is.URL ||
		by.GetIdentityProvider() != "oidc" || by.GetAcr() != "AAL2_OR_ABOVE" || by.GetRelayingService() != "heraldctl" {
		t.Errorf("recorded destroyer %v, want the verified rzz-records-manager (subject 5f0c-records-manager of %s, AAL2_OR_ABOVE) via heraldctl", by, is.URL)
	}

	for alert, d := range map[string]*eventsv1.AlertDetails{"a1": old, "a2": fresh} {
		if _, err := ring.Open(ctx, "RZZ", alert, d); !errors.Is(err, sealing.ErrDestroyed) {
			t.Errorf("RZZ's %s opens after the destruction: %v", alert, err)
		}
	}
	if _, err := ring.Open(ctx, "RZY", "b1", other); err != nil {
		t.Errorf("RZY was shredded with RZZ: %v", err)
	}
	list := mustRun("keys", "list", "-keyring-file", keyring)
	if strings.Count(list, "by rzz-records-manager") != 2 {
		t.Errorf("list does not show both RZZ keys destroyed by rzz-records-manager:\n%s", list)
	}
	if again := mustRun(append(base, "-confirm", "RZZ", "RZZ")...); !strings.Contains(again, "nothing to destroy") {
		t.Errorf("a second destroy: %q", again)
	}

	// The development profile, nobody signed in: -by is recorded as typed,
	// marked unverified.
	t.Setenv("HERALD_CTL_TOKEN", "")
	mustRun(append(base, "-profile", "development", "-by", "dev-records-manager", "-confirm", "RZY", "RZY")...)
	if recorded := auditIntake(t, intake); len(recorded) != 2 || recorded[1].GetActor().GetPersonId() != "dev-records-manager" ||
		recorded[1].GetActor().GetIdentityProvider() != IdentityTyped || recorded[1].GetActor().GetSubject() != "" {
		t.Errorf("audit intake after a development destroy: %v, want RZY's destruction by dev-records-manager marked %q", recorded, IdentityTyped)
	}
}

// auditIntake returns the records on the audit intake topic, in order.
func auditIntake(t *testing.T, topic string) []*auditv1.AuditRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = testinfra.KafkaBrokers(t)
	var recorded []*auditv1.AuditRecord
	if err := eventlog.ReadTopic(ctx, cfg, topic, func(_, value []byte, _ int, _ int64) error {
		var entry auditv1.AuditEntry
		if err := proto.Unmarshal(value, &entry); err != nil {
			return err
		}
		recorded = append(recorded, entry.GetRecord())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recorded
}
