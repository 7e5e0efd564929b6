package sealing

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// File is the keyring file: per trust, its data keys, wrapped by the KEK.
// It holds no key in clear, so it can sit beside the KEK's reference in a
// Secret; without the KEK it opens nothing.
type File struct {
	Version int                   `json:"version"`
	Trusts  map[string]*TrustKeys `json:"trusts"`
}

// TrustKeys are one trust's data keys; Current seals new data.
type TrustKeys struct {
	Current string `json:"current"`
	Keys    []Key  `json:"keys"`
}

// Key is one data key. A destroyed key keeps its id and the time and person
// of its destruction, so that opening its data says why it cannot.
type Key struct {
	ID          string     `json:"id"`
	Created     time.Time  `json:"created"`
	Wrapped     []byte     `json:"wrapped,omitempty"`
	Destroyed   *time.Time `json:"destroyed,omitempty"`
	DestroyedBy string     `json:"destroyed_by,omitempty"`
}

func (t *TrustKeys) key(id string) *Key {
	for i := range t.Keys {
		if t.Keys[i].ID == id {
			return &t.Keys[i]
		}
	}
	return nil
}

// ReadFile reads a keyring file; a missing file is an empty keyring.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &File{Version: 1, Trusts: map[string]*TrustKeys{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read keyring %s: %w", path, err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse keyring %s: %w", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("keyring %s: version %d, want 1", path, f.Version)
	}
	if f.Trusts == nil {
		f.Trusts = map[string]*TrustKeys{}
	}
	return &f, nil
}

// WriteFile replaces the keyring file atomically (mode 0600).
func WriteFile(path string, f *File) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keyring-*")
	if err != nil {
		return fmt.Errorf("write keyring %s: %w", path, err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write keyring %s: %w", path, err)
	}
	if err := errors.Join(tmp.Sync(), tmp.Close(), os.Chmod(tmp.Name(), 0o600)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write keyring %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write keyring %s: %w", path, err)
	}
	return nil
}

// Rotate gives trust a new data key, wrapped by kek, and makes it current
// (the trust's first key when it has none). Older keys still open the data
// sealed under them. It returns the new key id.
func Rotate(ctx context.Context, path string, kek KEK, trust string, now time.Time) (string, error) {
	if trust == "" {
		return "", errors.New("trust is required")
	}
	f, err := ReadFile(path)
	if err != nil {
		return "", err
	}
	tk := f.Trusts[trust]
	if tk == nil {
		tk = &TrustKeys{}
		f.Trusts[trust] = tk
	}
	id := trust + "/" + strconv.Itoa(len(tk.Keys)+1)
	dek := make([]byte, DataKeySize)
	if _, err := rand.Read(dek); err != nil {
		return "", err
	}
	wrapped, err := kek.Wrap(ctx, trust, id, dek)
	if err != nil {
		return "", fmt.Errorf("wrap data key %s: %w: %w", id, ErrKEK, err)
	}
	tk.Keys = append(tk.Keys, Key{ID: id, Created: now.UTC(), Wrapped: wrapped})
	tk.Current = id
	return id, WriteFile(path, f)
}

// Destroy crypto-shreds trust's data keys: every key of the trust, or only
// keyID when set. Their wrapped copies are removed and the keyring records
// when and by whom. It returns the ids destroyed (none: nothing to do).
func Destroy(path, trust, keyID, by string, now time.Time) ([]string, error) {
	f, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	tk := f.Trusts[trust]
	if tk == nil {
		return nil, fmt.Errorf("trust %s: %w", trust, ErrNoKey)
	}
	var ids []string
	at := now.UTC()
	for i := range tk.Keys {
		k := &tk.Keys[i]
		if (keyID != "" && k.ID != keyID) || k.Destroyed != nil {
			continue
		}
		k.Wrapped, k.Destroyed, k.DestroyedBy = nil, &at, by
		ids = append(ids, k.ID)
	}
	if keyID != "" && tk.key(keyID) == nil {
		return nil, fmt.Errorf("key %s: %w", keyID, ErrNoKey)
	}
	if tk.key(tk.Current) != nil && tk.key(tk.Current).Destroyed != nil {
		tk.Current = "" // nothing more is sealed for the trust until a rotation
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return ids, WriteFile(path, f)
}

// Keyring seals and opens with the data keys of a keyring file. It re-reads
// the file whenever it changes (a rotation, a destruction, a Secret's
// update), so a destroyed key stops opening in a running service at its next
// use. Unwrapped keys are kept in memory only while the file still holds
// them. Safe for concurrent use.
type Keyring struct {
	path string
	kek  KEK

	mu    sync.Mutex
	stamp stamp
	file  *File
	deks  map[string]cipher.AEAD
}

type stamp struct {
	mod  time.Time
	size int64
	ok   bool
}

// Open returns the keyring of the file at path, unwrapping with kek. The
// file must exist (an empty keyring is a configuration mistake).
func Open(path string, kek KEK) (*Keyring, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	k := &Keyring{path: path, kek: kek, deks: map[string]cipher.AEAD{}}
	if _, err := k.current(); err != nil {
		return nil, err
	}
	return k, nil
}

// current returns the file as it is now, re-read if it changed.
func (k *Keyring) current() (*File, error) {
	fi, err := os.Stat(k.path)
	if err != nil {
		// The file vanished (a Secret removed): nothing opens.
		k.file, k.deks, k.stamp = &File{Version: 1, Trusts: map[string]*TrustKeys{}}, map[string]cipher.AEAD{}, stamp{}
		return k.file, nil
	}
	st := stamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
	if k.file != nil && st == k.stamp {
		return k.file, nil
	}
	f, err := ReadFile(k.path)
	if err != nil {
		return nil, err
	}
	kept := map[string]cipher.AEAD{}
	for id, a := range k.deks {
		if tk := f.Trusts[TrustOfKey(id)]; tk != nil {
			if key := tk.key(id); key != nil && key.Destroyed == nil && len(key.Wrapped) > 0 {
				kept[id] = a
			}
		}
	}
	k.file, k.deks, k.stamp = f, kept, st
	return f, nil
}

// aead returns the unwrapped data key keyID of trust.
func (k *Keyring) aead(ctx context.Context, f *File, trust, keyID string) (cipher.AEAD, error) {
	tk := f.Trusts[trust]
	if tk == nil || TrustOfKey(keyID) != trust {
		return nil, fmt.Errorf("trust %s key %q: %w", trust, keyID, ErrNoKey)
	}
	if a, ok := k.deks[keyID]; ok {
		return a, nil
	}
	key := tk.key(keyID)
	switch {
	case key == nil:
		return nil, fmt.Errorf("trust %s key %q: %w", trust, keyID, ErrNoKey)
	case key.Destroyed != nil:
		return nil, fmt.Errorf("key %s (destroyed %s): %w", keyID, key.Destroyed.Format(time.RFC3339), ErrDestroyed)
	}
	dek, err := k.kek.Unwrap(ctx, trust, keyID, key.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %s: %w: %w", keyID, ErrKEK, err)
	}
	a, err := newAEAD(dek)
	if err != nil {
		return nil, fmt.Errorf("data key %s: %w", keyID, err)
	}
	k.deks[keyID] = a
	return a, nil
}

// Seal moves the patient content of d (patient, report text, raw message)
// into d.Sealed under trust's current data key, bound to alertID. On error
// d is unchanged and must not be written.
func (k *Keyring) Seal(ctx context.Context, trust, alertID string, d *eventsv1.AlertDetails) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, err := k.current()
	if err != nil {
		return err
	}
	tk := f.Trusts[trust]
	if tk == nil || tk.Current == "" {
		return fmt.Errorf("seal alert %s: trust %s: %w", alertID, trust, ErrNoKey)
	}
	a, err := k.aead(ctx, f, trust, tk.Current)
	if err != nil {
		return fmt.Errorf("seal alert %s: %w", alertID, err)
	}
	return sealWith(a, tk.Current, trust, alertID, d)
}

// Open returns a copy of d with its sealed content restored, or d itself
// when it is not sealed (an event from before sealing). The error is
// ErrDestroyed, ErrNoKey, ErrKEK or ErrTampered, wrapped.
func (k *Keyring) Open(ctx context.Context, trust, alertID string, d *eventsv1.AlertDetails) (*eventsv1.AlertDetails, error) {
	if d.GetSealed() == nil {
		return d, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	f, err := k.current()
	if err != nil {
		return nil, err
	}
	a, err := k.aead(ctx, f, trust, d.GetSealed().GetKeyId())
	if err != nil {
		return nil, fmt.Errorf("open alert %s: %w", alertID, err)
	}
	return openWith(a, trust, alertID, d)
}

// TrustNames lists the trusts of a keyring file, for
// heraldctl keys list.
func (f *File) TrustNames() []string {
	var out []string
	for t := range f.Trusts {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
