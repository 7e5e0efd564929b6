// Package sealing is envelope encryption of patient data at rest, per trust
// (issue #20, item 8).
//
// Each trust has a data key (AES-256), kept only wrapped by a key-encryption
// key (KEK: a file, or a KMS behind the small KEK interface) in a keyring
// file. Intake seals the patient-identifiable and clinical-text fields of an
// AlertDetails (patient, report text, raw message) into AlertDetails.sealed
// before the event is appended, so the log never holds them in clear.
// Services that hold no keyring (acknowledgement, notification, rules)
// cannot read them; the console opens them for a signed-in person.
//
// Rotation adds a key to the trust and makes it current: new data is sealed
// under it, old data still opens under its own key id. Destroying a trust's
// keys (crypto-shredding) removes their wrapped copies from the keyring:
// every sealed value under them, wherever it is kept (the log, a backup, a
// reporting store), can no longer be opened.
package sealing

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// KEK wraps and unwraps data keys: a key-encryption key in a file (FileKEK)
// or a KMS. trust and keyID are bound to the wrapped key, so a wrapped key
// cannot be moved to another trust. Errors are returned as they are; the
// keyring wraps them in ErrKEK.
type KEK interface {
	Wrap(ctx context.Context, trust, keyID string, dek []byte) ([]byte, error)
	Unwrap(ctx context.Context, trust, keyID string, wrapped []byte) ([]byte, error)
}

var (
	// ErrDestroyed: the data key that sealed the value was destroyed
	// (crypto-shredded); the value can never be opened again.
	ErrDestroyed = errors.New("the trust's data key was destroyed")
	// ErrNoKey: the keyring has no data key for the trust (or the key id).
	ErrNoKey = errors.New("no data key for the trust")
	// ErrKEK: the key-encryption key (file or KMS) failed; nothing was
	// sealed or opened. Worth retrying.
	ErrKEK = errors.New("the key-encryption key is unavailable")
	// ErrTampered: the sealed value does not open under its key (modified,
	// or moved to another alert or trust).
	ErrTampered = errors.New("the sealed details do not open (modified or moved)")
)

// DataKeySize is the size of a data key (AES-256).
const DataKeySize = 32

// aad is the additional data of a sealed value: it binds the ciphertext to
// its trust, alert and key.
func aad(trust, alertID, keyID string) []byte {
	return []byte("herald.sealed.v1\x00" + trust + "\x00" + alertID + "\x00" + keyID)
}

// sealWith encrypts the patient content of d under aead (key keyID) and
// moves it into d.Sealed: the clear fields are emptied.
func sealWith(aead cipher.AEAD, keyID, trust, alertID string, d *eventsv1.AlertDetails) error {
	content := &eventsv1.PatientContent{Patient: d.GetPatient(), ReportText: d.GetReportText(),
		RawPayload: d.GetRawPayload(), RawContentType: d.GetRawContentType()}
	plain, err := proto.Marshal(content)
	if err != nil {
		return fmt.Errorf("seal the details of alert %s: %w", alertID, err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("seal the details of alert %s: %w", alertID, err)
	}
	d.Sealed = &eventsv1.SealedDetails{KeyId: keyID, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plain, aad(trust, alertID, keyID))}
	d.Patient, d.ReportText, d.RawPayload, d.RawContentType = nil, "", nil, ""
	return nil
}

// openWith decrypts d.Sealed under aead and returns a copy of d with the
// clear fields restored and Sealed cleared.
func openWith(aead cipher.AEAD, trust, alertID string, d *eventsv1.AlertDetails) (*eventsv1.AlertDetails, error) {
	s := d.GetSealed()
	if len(s.GetNonce()) != aead.NonceSize() {
		return nil, fmt.Errorf("open the details of alert %s: %w", alertID, ErrTampered)
	}
	plain, err := aead.Open(nil, s.GetNonce(), s.GetCiphertext(), aad(trust, alertID, s.GetKeyId()))
	if err != nil {
		return nil, fmt.Errorf("open the details of alert %s: %w", alertID, ErrTampered)
	}
	var content eventsv1.PatientContent
	if err := proto.Unmarshal(plain, &content); err != nil {
		return nil, fmt.Errorf("open the details of alert %s: %w", alertID, ErrTampered)
	}
	out := proto.Clone(d).(*eventsv1.AlertDetails)
	out.Sealed = nil
	out.Patient, out.ReportText, out.RawPayload, out.RawContentType = content.GetPatient(), content.GetReportText(), content.GetRawPayload(), content.GetRawContentType()
	return out, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != DataKeySize {
		return nil, fmt.Errorf("a key must be %d bytes, got %d", DataKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// TrustOfKey returns the trust of a key id ("<trust>/<n>").
func TrustOfKey(keyID string) string {
	t, _, _ := strings.Cut(keyID, "/")
	return t
}
