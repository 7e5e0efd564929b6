package eventsign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LoadSigner reads a PEM "PRIVATE KEY" (PKCS #8) Ed25519 key, as
// `openssl genpkey -algorithm ed25519` writes it: the service's own
// signing key (-event-signing-key-file).
func LoadSigner(path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read event signing key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("event signing key %s holds no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("event signing key %s: %w", path, err)
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("event signing key %s holds a %T, want an Ed25519 key", path, k)
	}
	return NewSigner(ed)
}

// KeySetFile is the shape of the key-set file (-event-verify-keys-file):
//
//	keys:
//	  - service: acknowledgement     # the service identity holding the private key
//	    kid: 3q2-7wXmYZ0aBcDeFgHiJk  # optional; checked against the key when given
//	    public_key: |
//	      -----BEGIN PUBLIC KEY-----
//	      MCowBQYDK2VwAyEA...
//	      -----END PUBLIC KEY-----
//
// During a rotation a service has two keys in the set (the old one until no
// record signed with it is still to be read for the first time, and the
// new one from before the service signs with it).
type KeySetFile struct {
	Keys []KeyEntry `yaml:"keys"`
}

// KeyEntry is one key of a KeySetFile.
type KeyEntry struct {
	Service   string `yaml:"service"`
	KID       string `yaml:"kid,omitempty"`
	PublicKey string `yaml:"public_key"`
}

// LoadKeySet reads the trusted public keys from path: a key-set file
// (KeySetFile, YAML), or a directory whose *.yaml and *.yml files are key
// sets (a Kubernetes Secret or ConfigMap mounted as a volume).
func LoadKeySet(path string) (*KeySet, error) {
	files, err := keySetFiles(path)
	if err != nil {
		return nil, err
	}
	var keys []Key
	for _, f := range files {
		ks, err := readKeySetFile(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, ks...)
	}
	ks, err := NewKeySet(keys...)
	if err != nil {
		return nil, fmt.Errorf("event verify keys %s: %w", path, err)
	}
	return ks, nil
}

func readKeySetFile(path string) ([]Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read event verify keys: %w", err)
	}
	var f KeySetFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("event verify keys %s: %w", path, err)
	}
	keys := make([]Key, 0, len(f.Keys))
	for i, e := range f.Keys {
		if e.Service == "" {
			return nil, fmt.Errorf("event verify keys %s: keys[%d].service is required", path, i)
		}
		block, rest := pem.Decode([]byte(e.PublicKey))
		if block == nil || block.Type != "PUBLIC KEY" || strings.TrimSpace(string(rest)) != "" {
			return nil, fmt.Errorf("event verify keys %s: keys[%d].public_key must be one PEM PUBLIC KEY block (never the private key)", path, i)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("event verify keys %s: keys[%d].public_key: %w", path, i, err)
		}
		ed, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("event verify keys %s: keys[%d].public_key is a %T, want an Ed25519 key", path, i, k)
		}
		keys = append(keys, Key{ID: e.KID, Service: e.Service, Public: ed})
	}
	return keys, nil
}

// Generated names the files GenerateFiles wrote.
type Generated struct {
	// PrivateKeyFiles by service identity.
	PrivateKeyFiles map[string]string
	// KeySetFile holds every service's public key.
	KeySetFile string
}

// GenerateFiles makes a throwaway key per service in dir (<service>.key,
// mode 0600) and the key-set file naming them all (event-keys.yaml), for
// development and test systems, as platform/devca makes their
// certificates. Nothing here is fit for production.
func GenerateFiles(dir string, services ...string) (Generated, error) {
	if len(services) == 0 {
		services = Services()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Generated{}, fmt.Errorf("make the event key folder: %w", err)
	}
	g := Generated{PrivateKeyFiles: map[string]string{}, KeySetFile: filepath.Join(dir, "event-keys.yaml")}
	var set KeySetFile
	for _, svc := range services {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return Generated{}, fmt.Errorf("generate the event key of %s: %w", svc, err)
		}
		pemPriv, pemPub, err := EncodeKeyPair(pub, priv)
		if err != nil {
			return Generated{}, err
		}
		f := filepath.Join(dir, svc+".key")
		if err := os.WriteFile(f, pemPriv, 0o600); err != nil {
			return Generated{}, fmt.Errorf("write the event key of %s: %w", svc, err)
		}
		g.PrivateKeyFiles[svc] = f
		set.Keys = append(set.Keys, KeyEntry{Service: svc, KID: KeyID(pub), PublicKey: string(pemPub)})
	}
	b, err := yaml.Marshal(set)
	if err != nil {
		return Generated{}, fmt.Errorf("encode the event key set: %w", err)
	}
	if err := os.WriteFile(g.KeySetFile, b, 0o644); err != nil {
		return Generated{}, fmt.Errorf("write the event key set: %w", err)
	}
	return g, nil
}

// EncodeKeyPair returns the PEM encodings of a key pair: PKCS #8 "PRIVATE
// KEY" and PKIX "PUBLIC KEY".
func EncodeKeyPair(pub ed25519.PublicKey, priv ed25519.PrivateKey) (privPEM, pubPEM []byte, err error) {
	pk8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("encode event signing key: %w", err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("encode event public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), nil
}
