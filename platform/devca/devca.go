// Package devca makes a throwaway certificate authority and the leaf
// certificates of development and test systems (crypto/x509 only: nothing
// is downloaded, no openssl). `make run`, the e2e suites, the load harness
// and the test Kafka and Redis generate one at start, so that the path they
// exercise is the TLS path production runs.
//
// Every leaf serves and calls (server and client authentication), carries
// its name as the common name and a DNS SAN, the URI SAN
// spiffe://<trust domain>/ns/herald/sa/<name> (the identity mtls.Identity
// reports) and, unless told otherwise, localhost, 127.0.0.1 and ::1. Keys
// are ECDSA P-256, written as PKCS #8 (which Java's PEM key stores need).
// Nothing here is fit for production: the CA key sits beside its
// certificate.
package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/herald-health/herald/platform/mtls"
)

// TrustDomain is the SPIFFE trust domain of development identities.
const TrustDomain = "herald.dev"

// DefaultValidity is how long a development CA and its leaves are valid.
const DefaultValidity = 30 * 24 * time.Hour

// CA is a development certificate authority.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// New makes a CA named name, valid from an hour before now (clock skew)
// for validity.
func New(name string, now time.Time, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Herald development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, certPEM: encodeCert(der), keyPEM: keyPEM}, nil
}

// Load reads a CA written by WriteCA.
func Load(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("CA files %s and %s hold no PEM block", certFile, keyFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate %s: %w", certFile, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA key %s: %w", keyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("CA key %s is not an ECDSA key", keyFile)
	}
	return &CA{cert: cert, key: key, certPEM: certPEM, keyPEM: keyPEM}, nil
}

// CertPEM returns the CA certificate (the trust bundle peers load).
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Leaf describes a certificate to issue.
type Leaf struct {
	// Name is the service (or user) name: common name, DNS SAN and the
	// last segment of the SPIFFE ID.
	Name string
	// Hosts are further DNS names and IP addresses. When empty, localhost,
	// 127.0.0.1 and ::1.
	Hosts []string
	// NoSPIFFE leaves out the URI SAN (the identity is then the DNS name).
	NoSPIFFE bool
	// NotBefore and NotAfter bound the validity; zero values mean from an
	// hour before the CA's start to the CA's end.
	NotBefore, NotAfter time.Time
}

// SPIFFEID returns the development identity of name.
func SPIFFEID(name string) string {
	return (&url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/ns/herald/sa/" + name}).String()
}

// Issue signs a leaf certificate and returns it and its key as PEM.
func (ca *CA) Issue(l Leaf) (certPEM, keyPEM []byte, err error) {
	if l.Name == "" {
		return nil, nil, errors.New("issue certificate: a name is required")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key of %s: %w", l.Name, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: l.Name, Organization: []string{"Herald development"}},
		NotBefore:    l.NotBefore,
		NotAfter:     l.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{l.Name},
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = ca.cert.NotBefore
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	hosts := l.Hosts
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != l.Name {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if !l.NoSPIFFE {
		u, err := url.Parse(SPIFFEID(l.Name))
		if err != nil {
			return nil, nil, fmt.Errorf("identity of %s: %w", l.Name, err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate of %s: %w", l.Name, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// File names WriteDir uses inside its directory.
const (
	CAFileName    = "ca.crt"
	CAKeyFileName = "ca.key"
)

// WriteCA writes the CA's certificate and key into dir (created if
// missing) as ca.crt and ca.key.
func (ca *CA) WriteCA(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, CAFileName), ca.certPEM, 0o644); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, CAKeyFileName), ca.keyPEM, 0o600)
}

// WriteLeaf issues l and writes <name>.crt and <name>.key into dir. It
// returns the files of that identity with the CA bundle dir/ca.crt.
func (ca *CA) WriteLeaf(dir string, l Leaf) (mtls.Files, error) {
	certPEM, keyPEM, err := ca.Issue(l)
	if err != nil {
		return mtls.Files{}, err
	}
	f := mtls.Files{
		CertFile: filepath.Join(dir, l.Name+".crt"),
		KeyFile:  filepath.Join(dir, l.Name+".key"),
		CAFile:   filepath.Join(dir, CAFileName),
	}
	if err := WriteFileAtomic(f.KeyFile, keyPEM, 0o600); err != nil {
		return mtls.Files{}, err
	}
	if err := WriteFileAtomic(f.CertFile, certPEM, 0o644); err != nil {
		return mtls.Files{}, err
	}
	return f, nil
}

// WriteDir makes a CA valid from now for validity, writes it into dir and
// issues one leaf per name (with the default hosts). It returns each
// name's files.
func WriteDir(dir string, now time.Time, validity time.Duration, names ...string) (map[string]mtls.Files, error) {
	ca, err := New("Herald development CA", now, validity)
	if err != nil {
		return nil, err
	}
	if err := ca.WriteCA(dir); err != nil {
		return nil, err
	}
	out := make(map[string]mtls.Files, len(names))
	for _, n := range names {
		f, err := ca.WriteLeaf(dir, Leaf{Name: n})
		if err != nil {
			return nil, err
		}
		out[n] = f
	}
	return out, nil
}

// WriteFileAtomic writes data to a temporary file beside name and renames
// it over name, so a reader sees the old content or the new, never part of
// it (as Kubernetes updates a Secret volume).
func WriteFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("draw a serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
