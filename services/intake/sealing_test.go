package intake_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/sealing"
	"github.com/herald-health/herald/services/intake"
)

// sealedPatientData are strings of the example message that only the
// sealed part of an event may hold: NHS number, local MRN, name, date of
// birth (as sent and as parsed), address, the report's findings, the
// clinical question and the note.
var sealedPatientData = []string{"9990000018", "RZZ1234567", "TESTPATIENT", "19700101", "1970-01-01", "Synthetic Street",
	"Mediastinal shift", "pleuritic", "read-back confirmed"}

// keys writes a KEK and a keyring with a key for RZZ and RXF.
func keys(t *testing.T) (sealing.Files, sealing.KEK) {
	t.Helper()
	dir := t.TempDir()
	f := sealing.Files{KeyringFile: filepath.Join(dir, "keyring.json"), KEKFile: filepath.Join(dir, "kek")}
	require.NoError(t, sealing.GenerateKEKFile(f.KEKFile))
	kek, err := sealing.LoadFileKEK(f.KEKFile)
	require.NoError(t, err)
	for _, trust := range []string{"RZZ", "RXF"} {
		_, err := sealing.Rotate(context.Background(), f.KeyringFile, kek, trust, time.Now())
		require.NoError(t, err)
	}
	return f, kek
}

// rawLog reads the values of every record of the harness's topic as bytes.
func (h *harness) rawLog(t *testing.T) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out [][]byte
	require.NoError(t, eventlog.ReadTopic(ctx, h.cfg.Log, h.cfg.Log.EventsTopic, func(_, value []byte, _ int, _ int64) error {
		out = append(out, append([]byte(nil), value...))
		return nil
	}))
	return out
}

// TestPatientDataIsSealedBeforeItIsDurable sends the reference HL7 message
// to an intake holding the trusts' keys: the record on the log holds none
// of the patient's data in clear (the bytes Kafka keeps), the routing
// fields rules needs stay readable, and the trust's key opens the sealed
// part to exactly what was received.
func TestPatientDataIsSealedBeforeItIsDurable(t *testing.T) {
	files, kek := keys(t)
	h := start(t, func(c *intake.Config) { c.Keys = files })
	msg := example(t, "oru_r01_critical_pneumothorax.hl7")
	a := send(t, h.dial(t), msg)
	require.Equal(t, "AA", a.code, a.text)

	raw := h.rawLog(t)
	require.Len(t, raw, 1)
	for _, p := range sealedPatientData {
		require.False(t, bytes.Contains(raw[0], []byte(p)), "%q is in clear on the log", p)
	}
	ev := h.events(t)[0]
	d := ev.GetAlertRaised().GetDetails()
	require.Equal(t, "RZZ/1", d.GetSealed().GetKeyId())
	require.Nil(t, d.GetPatient())
	require.Empty(t, d.GetReportText())
	require.Empty(t, d.GetRawPayload())
	require.Equal(t, "ACC20261129001", d.GetAccession(), "the accession stays in clear (identity, dedup)")
	require.NotEmpty(t, d.GetSourceFlag().GetAbnormalFlags(), "routing facts stay in clear for rules")

	ring, err := sealing.Open(files.KeyringFile, kek)
	require.NoError(t, err)
	opened, err := ring.Open(context.Background(), ev.GetTenant(), ev.GetAlertId(), d)
	require.NoError(t, err)
	require.Equal(t, "9990000018", opened.GetPatient().GetNhsNumber())
	require.Equal(t, "TESTPATIENT", opened.GetPatient().GetFamilyName())
	require.Contains(t, opened.GetReportText(), "Mediastinal shift")
	require.Equal(t, msg, opened.GetRawPayload())
}

// TestMessageIsRefusedWhileItsPatientDataCannotBeSealed: with the KMS down
// the sender is told to resend later (HL7 AR, the answer to a broker
// outage) and nothing is appended, in clear or
// otherwise; once the KMS is back the resend is recorded, sealed.
func TestMessageIsRefusedWhileItsPatientDataCannotBeSealed(t *testing.T) {
	files, kek := keys(t)
	kms := &sealing.SwitchableKEK{KEK: kek}
	kms.SetFailing(true)
	h := startWith(t, func(c *intake.Config) { c.Keys = files }, noop.NewMeterProvider(), intake.Deps{KEK: kms})
	c := h.dial(t)
	msg := example(t, "oru_r01_critical_pneumothorax.hl7")
	a := send(t, c, msg)
	require.Equal(t, "AR", a.code, "a message whose patient data cannot be sealed is refused for a resend: %s", a.text)
	require.Empty(t, h.rawLog(t), "nothing is appended while the KMS is down")

	kms.SetFailing(false)
	a = send(t, c, msg)
	require.Equal(t, "AA", a.code, a.text)
	evs := h.events(t)
	require.Len(t, evs, 1)
	require.Equal(t, "RZZ/1", evs[0].GetAlertRaised().GetDetails().GetSealed().GetKeyId())
}
