package sealing_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/sealing"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

const (
	nhs    = "9434765919"
	family = "SEALEDNAME"
	report = "Large right-sided pneumothorax"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func details() *eventsv1.AlertDetails {
	return &eventsv1.AlertDetails{Accession: "ACC-1", SourceMessageId: "MSG-1",
		Patient:    &eventsv1.Patient{NhsNumber: nhs, FamilyName: family, GivenName: "Jane", BirthDate: "1961-04-02"},
		Exam:       &eventsv1.Exam{Code: "CCHES", Modality: "CT", Display: "CT chest"},
		Referrer:   &eventsv1.Clinician{Id: "dr-a", Team: "Respiratory"},
		ReportText: report, RawPayload: []byte("MSH|^~\\&|RIS|RX1|" + family), RawContentType: "x-application/hl7-v2+er7"}
}

// setup writes a KEK and a keyring with one key for RX1 and RX2.
func setup(t testing.TB) (path string, kek sealing.KEK) {
	dir := t.TempDir()
	kekPath := filepath.Join(dir, "kek")
	if err := sealing.GenerateKEKFile(kekPath); err != nil {
		t.Fatal(err)
	}
	k, err := sealing.LoadFileKEK(kekPath)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "keyring.json")
	for _, trust := range []string{"RX1", "RX2"} {
		if _, err := sealing.Rotate(context.Background(), path, k, trust, now); err != nil {
			t.Fatal(err)
		}
	}
	return path, k
}

func open(t testing.TB, path string, kek sealing.KEK) *sealing.Keyring {
	k, err := sealing.Open(path, kek)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSealedDetailsHoldNoPatientDataInClear seals an alert's details: the
// encoded details hold neither the NHS number, the name nor the report, and
// opening gives back exactly what was sealed.
func TestSealedDetailsHoldNoPatientDataInClear(t *testing.T) {
	path, kek := setup(t)
	k := open(t, path, kek)
	ctx := context.Background()
	d := details()
	if err := k.Seal(ctx, "RX1", "alert-1", d); err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(d)
	for _, secret := range []string{nhs, family, report, "Jane", "1961-04-02"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("sealed details hold %q in clear", secret)
		}
	}
	if d.GetExam().GetModality() != "CT" || d.GetReferrer().GetTeam() != "Respiratory" || d.GetAccession() != "ACC-1" {
		t.Error("routing fields were sealed too; rules needs them in clear")
	}
	if got := d.GetSealed().GetKeyId(); got != "RX1/1" {
		t.Errorf("key id %q, want RX1/1", got)
	}
	got, err := k.Open(ctx, "RX1", "alert-1", d)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, details()) {
		t.Errorf("opened %v, want %v", got, details())
	}
}

// TestSealedDetailsDoNotOpenElsewhere: a sealed value moved to another
// alert or another trust does not open.
func TestSealedDetailsDoNotOpenElsewhere(t *testing.T) {
	path, kek := setup(t)
	k := open(t, path, kek)
	ctx := context.Background()
	d := details()
	if err := k.Seal(ctx, "RX1", "alert-1", d); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open(ctx, "RX1", "alert-2", d); !errors.Is(err, sealing.ErrTampered) {
		t.Errorf("moved to another alert: %v, want ErrTampered", err)
	}
	if _, err := k.Open(ctx, "RX2", "alert-1", d); !errors.Is(err, sealing.ErrNoKey) {
		t.Errorf("claimed by another trust: %v, want ErrNoKey", err)
	}
	d.Sealed.Ciphertext[0] ^= 1
	if _, err := k.Open(ctx, "RX1", "alert-1", d); !errors.Is(err, sealing.ErrTampered) {
		t.Errorf("modified: %v, want ErrTampered", err)
	}
}

// TestRotationSealsUnderTheNewKeyAndOpensTheOld: after a rotation new
// details are sealed under RX1/2 and details sealed under RX1/1 still open,
// in a keyring that was opened before the rotation (it re-reads the file).
func TestRotationSealsUnderTheNewKeyAndOpensTheOld(t *testing.T) {
	path, kek := setup(t)
	k := open(t, path, kek)
	ctx := context.Background()
	old := details()
	if err := k.Seal(ctx, "RX1", "alert-1", old); err != nil {
		t.Fatal(err)
	}
	id, err := sealing.Rotate(ctx, path, kek, "RX1", now.Add(time.Hour))
	if err != nil || id != "RX1/2" {
		t.Fatalf("rotate: %q %v", id, err)
	}
	fresh := details()
	if err := k.Seal(ctx, "RX1", "alert-2", fresh); err != nil {
		t.Fatal(err)
	}
	if fresh.GetSealed().GetKeyId() != "RX1/2" {
		t.Errorf("sealed under %s after rotation, want RX1/2", fresh.GetSealed().GetKeyId())
	}
	for alert, d := range map[string]*eventsv1.AlertDetails{"alert-1": old, "alert-2": fresh} {
		if got, err := k.Open(ctx, "RX1", alert, d); err != nil || got.GetPatient().GetNhsNumber() != nhs {
			t.Errorf("open %s: %v", alert, err)
		}
	}
}

// TestDestroyedKeyOpensNothingAnywhere crypto-shreds RX1: a keyring that
// had already unwrapped the key (a running console) can no longer open
// RX1's details, saying the key was destroyed, nothing more is sealed for
// RX1, and RX2 is untouched.
func TestDestroyedKeyOpensNothingAnywhere(t *testing.T) {
	path, kek := setup(t)
	running := open(t, path, kek)
	ctx := context.Background()
	a, b := details(), details()
	if err := running.Seal(ctx, "RX1", "alert-1", a); err != nil {
		t.Fatal(err)
	}
	if err := running.Seal(ctx, "RX2", "alert-2", b); err != nil {
		t.Fatal(err)
	}
	if _, err := running.Open(ctx, "RX1", "alert-1", a); err != nil {
		t.Fatal(err)
	}
	ids, err := sealing.Destroy(path, "RX1", "", "records-manager-1", now.Add(time.Hour))
	if err != nil || len(ids) != 1 || ids[0] != "RX1/1" {
		t.Fatalf("destroy: %v %v", ids, err)
	}
	for name, k := range map[string]*sealing.Keyring{"running": running, "started later": open(t, path, kek)} {
		if _, err := k.Open(ctx, "RX1", "alert-1", a); !errors.Is(err, sealing.ErrDestroyed) {
			t.Errorf("%s keyring opens RX1 after destruction: %v", name, err)
		}
		if err := k.Seal(ctx, "RX1", "alert-3", details()); !errors.Is(err, sealing.ErrNoKey) {
			t.Errorf("%s keyring seals for RX1 after destruction: %v", name, err)
		}
		if _, err := k.Open(ctx, "RX2", "alert-2", b); err != nil {
			t.Errorf("%s keyring: RX2 shredded with RX1: %v", name, err)
		}
	}
	f, err := sealing.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key := f.Trusts["RX1"].Keys[0]
	if len(key.Wrapped) != 0 || key.DestroyedBy != "records-manager-1" {
		t.Errorf("destroyed key still wrapped or unattributed: %+v", key)
	}
}

// TestSealFailsClosedWhenTheKMSIsDown: a KEK that fails leaves the details
// unchanged and returns ErrKEK; nothing is sealed with a made-up key, and
// the caller must not write the event.
func TestSealFailsClosedWhenTheKMSIsDown(t *testing.T) {
	path, kek := setup(t)
	kms := &sealing.SwitchableKEK{KEK: kek}
	kms.SetFailing(true)
	k := open(t, path, kms)
	d := details()
	err := k.Seal(context.Background(), "RX1", "alert-1", d)
	if !errors.Is(err, sealing.ErrKEK) {
		t.Fatalf("seal with the KMS down: %v, want ErrKEK", err)
	}
	if d.GetSealed() != nil || d.GetReportText() != report {
		t.Error("a failed seal changed the details")
	}
	if strings.Contains(err.Error(), nhs) || strings.Contains(err.Error(), report) {
		t.Error("the error carries patient data")
	}
	kms.SetFailing(false)
	if err := k.Seal(context.Background(), "RX1", "alert-1", d); err != nil {
		t.Fatalf("seal after the KMS came back: %v", err)
	}
}

// BenchmarkSeal and BenchmarkOpen measure the per-alert cost once the data
// key is unwrapped (the KEK is used once per key per process).
func BenchmarkSeal(b *testing.B) {
	path, kek := setup(b)
	k := open(b, path, kek)
	ctx := context.Background()
	for b.Loop() {
		if err := k.Seal(ctx, "RX1", "alert-1", details()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	path, kek := setup(b)
	k := open(b, path, kek)
	ctx := context.Background()
	d := details()
	if err := k.Seal(ctx, "RX1", "alert-1", d); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := k.Open(ctx, "RX1", "alert-1", d); err != nil {
			b.Fatal(err)
		}
	}
}
