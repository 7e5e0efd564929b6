package ctl

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/sealing"
	"github.com/herald-health/herald/platform/testinfra"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

// TestKeysDestroyRecordsTheDestructionThenShredsTheTrust drives heraldctl
// keys as an operator would: a KEK, a key for two trusts, a rotation; a
// destroy without -by or -confirm is refused; a destroy records
// DataKeyDestroyed (who, which keys) on the audit intake and then no detail
// of the trust, sealed under either of its keys, opens any more; the other
// trust's still do; list shows who destroyed what and holds no key
// material.
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

	base := []string{"keys", "destroy", "-keyring-file", keyring, "-brokers", brokers, "-intake-topic", intake}
	if code, _, _ := runCtl(append(base, "-confirm", "RZZ", "RZZ")...); code != 2 {
		t.Errorf("destroy without -by: exit %d, want 2", code)
	}
	if code, _, _ := runCtl(append(base, "-by", "records-manager-1", "RZZ")...); code != 2 {
		t.Errorf("destroy without -confirm: exit %d, want 2", code)
	}
	for _, d := range []*eventsv1.AlertDetails{old, fresh} {
		if _, err := ring.Open(ctx, "RZZ", map[bool]string{true: "a1", false: "a2"}[d == old], d); err != nil {
			t.Fatalf("a refused destroy destroyed something: %v", err)
		}
	}
	out := mustRun(append(base, "-by", "records-manager-1", "-confirm", "RZZ", "RZZ")...)
	if !strings.Contains(out, "RZZ/1, RZZ/2") {
		t.Errorf("destroy said %q", out)
	}

	// The destruction is on the audit intake, with who and which keys.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = testinfra.KafkaBrokers(t)
	var recorded []*auditv1.AuditRecord
	if err := eventlog.ReadTopic(rctx, cfg, intake, func(_, value []byte, _ int, _ int64) error {
		var entry auditv1.AuditEntry
		if err := proto.Unmarshal(value, &entry); err != nil {
			return err
		}
		recorded = append(recorded, entry.GetRecord())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(recorded) != 1 || recorded[0].GetEventType() != audit.TypeDataKeyDestroyed || recorded[0].GetTrust() != "RZZ" ||
		recorded[0].GetActor().GetPersonId() != "records-manager-1" || !strings.Contains(recorded[0].GetDetail(), "RZZ/1,RZZ/2") {
		t.Fatalf("audit intake holds %v, want one DataKeyDestroyed of RZZ/1,RZZ/2 by records-manager-1", recorded)
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
	if !strings.Contains(list, "by records-manager-1") || strings.Count(list, "by records-manager-1") != 2 {
		t.Errorf("list does not show both RZZ keys destroyed by records-manager-1:\n%s", list)
	}
	if again := mustRun(append(base, "-by", "records-manager-1", "-confirm", "RZZ", "RZZ")...); !strings.Contains(again, "nothing to destroy") {
		t.Errorf("a second destroy: %q", again)
	}
}
