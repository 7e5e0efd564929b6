package sealing

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// FileKEK is a key-encryption key read from a file (a mounted Secret): 32
// random bytes, base64. It wraps data keys with AES-256-GCM, binding trust
// and key id. A deployment with a KMS implements KEK over it instead, and
// gets destruction the KMS can attest; with a FileKEK, destroying a data
// key removes the only wrapped copy Herald holds (see docs/design.md).
type FileKEK struct{ aead cipher.AEAD }

// LoadFileKEK reads a KEK file written by GenerateKEKFile.
func LoadFileKEK(path string) (*FileKEK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the key-encryption key %s: %w", path, err)
	}
	key, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s: not base64: %w", path, err)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s: %w", path, err)
	}
	return &FileKEK{aead: aead}, nil
}

// GenerateKEKFile writes a new random KEK to path (mode 0600); it refuses
// to overwrite an existing file, whose loss would shred every trust.
func GenerateKEKFile(path string) error {
	key := make([]byte, DataKeySize)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write the key-encryption key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	return errors.Join(err, f.Close())
}

// Wrap encrypts a data key.
func (k *FileKEK) Wrap(_ context.Context, trust, keyID string, dek []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(nonce, nonce, dek, []byte("herald.dek.v1\x00"+trust+"\x00"+keyID)), nil
}

// Unwrap decrypts a data key.
func (k *FileKEK) Unwrap(_ context.Context, trust, keyID string, wrapped []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(wrapped) < n {
		return nil, errors.New("wrapped key too short")
	}
	dek, err := k.aead.Open(nil, wrapped[:n], wrapped[n:], []byte("herald.dek.v1\x00"+trust+"\x00"+keyID))
	if err != nil {
		return nil, fmt.Errorf("unwrap %s: not wrapped by this key-encryption key", keyID)
	}
	return dek, nil
}

// SwitchableKEK is a KEK that fails while Fail is set: tests use it as a
// KMS that is down.
type SwitchableKEK struct {
	KEK  KEK
	fail atomic.Bool
}

// ErrKMSDown is SwitchableKEK's error while it fails.
var ErrKMSDown = errors.New("kms unavailable")

// SetFailing makes every call fail (true) or pass through (false).
func (s *SwitchableKEK) SetFailing(f bool) { s.fail.Store(f) }

// Wrap passes through unless failing.
func (s *SwitchableKEK) Wrap(ctx context.Context, trust, keyID string, dek []byte) ([]byte, error) {
	if s.fail.Load() {
		return nil, ErrKMSDown
	}
	return s.KEK.Wrap(ctx, trust, keyID, dek)
}

// Unwrap passes through unless failing.
func (s *SwitchableKEK) Unwrap(ctx context.Context, trust, keyID string, wrapped []byte) ([]byte, error) {
	if s.fail.Load() {
		return nil, ErrKMSDown
	}
	return s.KEK.Unwrap(ctx, trust, keyID, wrapped)
}
