package eventsign

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Files names a service's key files: its own signing key and the key set
// it verifies against (either may be empty).
type Files struct {
	SigningKeyFile string
	VerifyKeysFile string
}

// SourceOptions tune a Source.
type SourceOptions struct {
	// CheckEvery is the longest a changed file goes unnoticed (default
	// DefaultCheckEvery, as the TLS material of platform/mtls: Kubernetes
	// itself takes up to a minute to update a Secret volume).
	CheckEvery time.Duration
	// Now is the clock of the checks (default time.Now).
	Now func() time.Time
	// Logger records reloads (with the key ids now in use) and changes that
	// do not load (default: discard).
	Logger *slog.Logger
}

// DefaultCheckEvery is SourceOptions.CheckEvery's default.
const DefaultCheckEvery = 10 * time.Second

// Source is a service's current signing key and key set, re-read when
// their files change, without a restart: a key rotation is a change of the
// mounted Secret (docs/deployment.md, "Event signing keys"). It follows
// platform/mtls's Source: the files are looked at, on use, at most every
// CheckEvery, by one caller while the others go on with what is loaded; a
// change that does not load (a half-written file, a bad key) is logged
// once and the previous keys stay in use. Safe for concurrent use.
type Source struct {
	files Files
	every time.Duration
	now   func() time.Time
	log   *slog.Logger

	cur       atomic.Pointer[keyMaterial]
	checkMu   sync.Mutex
	lastCheck atomic.Int64
	rejected  string // the error last logged, so it is logged once
}

type keyMaterial struct {
	raw    []byte // the files as read (change detection)
	signer *Signer
	keys   *KeySet
}

// LoadSource reads the files now and returns a Source, or an error naming
// the setting whose file could not be used.
func LoadSource(files Files, opts SourceOptions) (*Source, error) {
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = DefaultCheckEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{files: files, every: opts.CheckEvery, now: opts.Now, log: opts.Logger}
	raw, err := s.read()
	if err != nil {
		return nil, err
	}
	m, err := s.parse(raw)
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	s.lastCheck.Store(s.now().UnixNano())
	return s, nil
}

// Signer returns the signing key in use (nil without a signing key file).
func (s *Source) Signer() *Signer { return s.current().signer }

// KeySet returns the key set in use (nil without a key-set file).
func (s *Source) KeySet() *KeySet { return s.current().keys }

// Reload re-reads the files now. On error the previous keys stay in use and
// the error names the setting at fault.
func (s *Source) Reload() error {
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	return s.reloadLocked()
}

func (s *Source) reloadLocked() error {
	s.lastCheck.Store(s.now().UnixNano())
	raw, err := s.read()
	if err != nil {
		return err
	}
	if bytes.Equal(raw, s.cur.Load().raw) {
		return nil
	}
	m, err := s.parse(raw)
	if err != nil {
		return err
	}
	s.cur.Store(m)
	s.rejected = ""
	attrs := []any{}
	if m.signer != nil {
		attrs = append(attrs, "signing_kid", m.signer.KeyID())
	}
	if m.keys != nil {
		var ids []string
		for _, k := range m.keys.Keys() {
			ids = append(ids, k.Service+":"+k.ID)
		}
		attrs = append(attrs, "verify_kids", strings.Join(ids, ","))
	}
	s.log.Info("event signing keys reloaded", attrs...)
	return nil
}

// current returns the keys in use, first re-reading the files when the
// last check is older than CheckEvery.
func (s *Source) current() *keyMaterial {
	if s.now().UnixNano()-s.lastCheck.Load() >= int64(s.every) && s.checkMu.TryLock() {
		if err := s.reloadLocked(); err != nil && err.Error() != s.rejected {
			s.rejected = err.Error()
			s.log.Warn("event signing keys changed but do not load; keeping the previous ones", "error", err.Error())
		}
		s.checkMu.Unlock()
	}
	return s.cur.Load()
}

// read returns the content of the files (a key-set directory's key-set
// files by name), for change detection.
func (s *Source) read() ([]byte, error) {
	var b bytes.Buffer
	if f := s.files.SigningKeyFile; f != "" {
		c, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("setting event-signing-key-file: read event signing key: %w", err)
		}
		fmt.Fprintf(&b, "signing %d\n", len(c))
		b.Write(c)
	}
	if f := s.files.VerifyKeysFile; f != "" {
		files, err := keySetFiles(f)
		if err != nil {
			return nil, fmt.Errorf("setting event-verify-keys-file: %w", err)
		}
		for _, name := range files {
			c, err := os.ReadFile(name)
			if err != nil {
				return nil, fmt.Errorf("setting event-verify-keys-file: read event verify keys: %w", err)
			}
			fmt.Fprintf(&b, "keys %s %d\n", name, len(c))
			b.Write(c)
		}
	}
	return b.Bytes(), nil
}

func (s *Source) parse(raw []byte) (*keyMaterial, error) {
	m := &keyMaterial{raw: raw}
	var errs []error
	if f := s.files.SigningKeyFile; f != "" {
		signer, err := LoadSigner(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("setting event-signing-key-file: %w", err))
		}
		m.signer = signer
	}
	if f := s.files.VerifyKeysFile; f != "" {
		ks, err := LoadKeySet(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("setting event-verify-keys-file: %w", err))
		}
		m.keys = ks
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// keySetFiles returns the key-set files of path: path itself, or the
// *.yaml and *.yml files of a directory (a mounted Secret or ConfigMap),
// sorted.
func keySetFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("event verify keys: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("event verify keys: %w", err)
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || e.IsDir() || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue // Kubernetes' ..data links and timestamped folders
		}
		files = append(files, filepath.Join(path, n))
	}
	sort.Strings(files)
	return files, nil
}
