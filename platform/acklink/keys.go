package acklink

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LoadSigner reads a PEM "PRIVATE KEY" (PKCS #8) Ed25519 key, as
// `openssl genpkey -algorithm ed25519` writes it.
func LoadSigner(path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("acklink: read private key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("acklink: %s holds no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("acklink: %s: %w", path, err)
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("acklink: %s holds a %T, want an Ed25519 key", path, k)
	}
	return NewSigner(ed)
}

// LoadVerifier reads the trusted public keys from path: a file of one or
// more PEM "PUBLIC KEY" (PKIX) blocks, or a directory whose *.pem and *.pub
// files hold them (a Kubernetes Secret mounted as a volume, one item per
// key during a rotation).
func LoadVerifier(path string) (*Verifier, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("acklink: public keys: %w", err)
	}
	files := []string{path}
	if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("acklink: public keys: %w", err)
		}
		files = files[:0]
		for _, e := range entries {
			n := e.Name()
			if strings.HasPrefix(n, ".") || e.IsDir() || !(strings.HasSuffix(n, ".pem") || strings.HasSuffix(n, ".pub")) {
				continue // Kubernetes' ..data links and timestamped folders
			}
			files = append(files, filepath.Join(path, n))
		}
		sort.Strings(files)
	}
	var keys []ed25519.PublicKey
	for _, f := range files {
		ks, err := readPublicKeys(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, ks...)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("acklink: no PEM PUBLIC KEY block in %s", path)
	}
	return NewVerifier(keys...)
}

func readPublicKeys(path string) ([]ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("acklink: read public keys: %w", err)
	}
	var keys []ed25519.PublicKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return keys, nil
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("acklink: %s holds a PEM %q block, want PUBLIC KEY only (never the private key)", path, block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("acklink: %s: %w", path, err)
		}
		ed, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("acklink: %s holds a %T, want an Ed25519 key", path, k)
		}
		keys = append(keys, ed)
	}
}

// Generated names the files GenerateFiles wrote.
type Generated struct {
	PrivateKeyFile string
	PublicKeyFile  string
	KeyID          string
}

// GenerateFiles makes a throwaway key pair in dir (ack-link.key, mode 0600,
// and ack-link.pub) for development and test systems, as platform/devca
// makes their certificates.
func GenerateFiles(dir string) (Generated, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Generated{}, fmt.Errorf("acklink: generate key: %w", err)
	}
	pk8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Generated{}, fmt.Errorf("acklink: encode private key: %w", err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Generated{}, fmt.Errorf("acklink: encode public key: %w", err)
	}
	g := Generated{PrivateKeyFile: filepath.Join(dir, "ack-link.key"), PublicKeyFile: filepath.Join(dir, "ack-link.pub"), KeyID: KeyID(pub)}
	err = errors.Join(
		os.WriteFile(g.PrivateKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8}), 0o600),
		os.WriteFile(g.PublicKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), 0o644),
	)
	if err != nil {
		return Generated{}, fmt.Errorf("acklink: write keys: %w", err)
	}
	return g, nil
}
