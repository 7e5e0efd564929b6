// Package mtls holds a service's TLS material (its certificate and key,
// and the CA bundle it trusts for its peers) loaded from PEM files, and
// picks up new files without a restart: cert-manager, SPIFFE helpers and
// Kubernetes Secret volumes replace the files in place, and every
// connection made after the change uses the new material. Connections
// already open keep theirs until they close.
//
// A Source re-reads its files lazily: at most once per CheckEvery, on the
// handshake that finds the last check older than that, without a goroutine
// to stop. A change that does not load (the certificate renewed but the key
// not yet written, a truncated file, a key that does not match) is logged
// and the previous material stays in use; the next check tries again.
//
// Servers built from a Source (ServerConfig) require a client certificate
// and verify it against the current CA bundle with the client-auth usage,
// its validity checked at the time of the handshake. Clients (ClientConfig,
// Dialer) verify the server's certificate and host name against the current
// bundle and present their own certificate when the Source has one. The
// peer's service identity is the certificate's first URI SAN (a SPIFFE ID
// such as spiffe://herald.example/ns/herald/sa/notification) or, without
// one, its first DNS SAN; see Identity.
package mtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/logging"
)

// Files names the PEM files of one TLS identity and its trust bundle.
type Files struct {
	// CertFile is this side's certificate chain, leaf first; KeyFile its
	// private key (PKCS #1, PKCS #8 or SEC 1). Both or neither.
	CertFile, KeyFile string
	// CAFile is the bundle of CA certificates trusted for the peer: the
	// clients a server accepts, the servers a client calls. Empty on a
	// client means the system's roots; a server cannot authenticate its
	// clients without it.
	CAFile string
}

// RegisterFlags binds <prefix>tls-cert, <prefix>tls-key and <prefix>tls-ca
// (environment fallback HERALD_<PREFIX>TLS_...): the identity and trust of
// a tool or a client that has no gRPC server of its own (heraldctl, the
// e2e harness). The values already in f are the defaults.
func (f *Files) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&f.CertFile, prefix+"tls-cert", f.CertFile, "TLS certificate chain (PEM) presented to the services called; reloaded when the file changes")
	fs.StringVar(&f.KeyFile, prefix+"tls-key", f.KeyFile, "key of "+prefix+"tls-cert (PEM)")
	fs.StringVar(&f.CAFile, prefix+"tls-ca", f.CAFile, "CA bundle (PEM) verifying the services called; reloaded when the file changes")
}

// IsZero reports whether no file is named.
func (f Files) IsZero() bool { return f == Files{} }

// Validate checks that the certificate and key come together; the error
// names the two settings (e.g. "grpc-tls-cert" and "grpc-tls-key").
func (f Files) Validate(certSetting, keySetting string) error {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return fmt.Errorf("settings %s and %s must be given together", certSetting, keySetting)
	}
	return nil
}

// Options tune a Source.
type Options struct {
	// CheckEvery is the longest a changed file goes unnoticed (default 10 s:
	// Kubernetes itself takes up to a minute to update a Secret volume).
	CheckEvery time.Duration
	// Clock times the checks and the verification of peers' certificates
	// (default: the wall clock).
	Clock clock.Clock
	// Logger records reloads and rejected changes (default: discard).
	Logger *slog.Logger
}

// DefaultCheckEvery is Options.CheckEvery's default.
const DefaultCheckEvery = 10 * time.Second

// Source is the current TLS material of one identity. It is safe for
// concurrent use.
type Source struct {
	files Files
	every time.Duration
	clk   clock.Clock
	log   *slog.Logger

	cur       atomic.Pointer[material]
	checkMu   sync.Mutex // held by the one goroutine re-reading the files
	lastCheck atomic.Int64
	rejected  []byte // the content last refused, so it is logged once
}

// material is one consistent load of the files.
type material struct {
	raw  [3][]byte // cert, key, CA as read
	cert *tls.Certificate
	leaf *x509.Certificate
	pool *x509.CertPool // nil: no CA file
}

// Load reads the files now and returns a Source, or an error naming the
// file that could not be used. At least one file must be named.
func Load(files Files, opts Options) (*Source, error) {
	if files.IsZero() {
		return nil, errors.New("tls: no certificate, key or CA file given")
	}
	if err := files.Validate("certificate file", "key file"); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = DefaultCheckEvery
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	s := &Source{files: files, every: opts.CheckEvery, clk: opts.Clock, log: opts.Logger}
	raw, err := s.read()
	if err != nil {
		return nil, err
	}
	m, err := s.parse(raw)
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	s.lastCheck.Store(s.clk.Now().UnixNano())
	return s, nil
}

// SystemRoots returns a Source without a certificate of its own that
// trusts the system's roots: a client of a service with a public
// certificate (a managed Kafka, a collector).
func SystemRoots() *Source {
	s := &Source{every: DefaultCheckEvery, clk: clock.Real{}, log: logging.Discard()}
	s.cur.Store(&material{})
	s.lastCheck.Store(s.clk.Now().UnixNano())
	return s
}

// Files returns the files the Source reads.
func (s *Source) Files() Files { return s.files }

// HasCertificate reports whether the Source presents a certificate of its
// own (servers must; clients may).
func (s *Source) HasCertificate() bool { return s.current().cert != nil }

// HasCA reports whether the Source has a CA bundle of its own.
func (s *Source) HasCA() bool { return s.current().pool != nil }

// Leaf returns the current certificate (nil without one): for logs and
// tests, e.g. its serial number and expiry.
func (s *Source) Leaf() *x509.Certificate { return s.current().leaf }

// Reload re-reads the files now. On error the previous material stays in
// use and the error names the file at fault.
func (s *Source) Reload() error {
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	return s.reloadLocked()
}

func (s *Source) reloadLocked() error {
	s.lastCheck.Store(s.clk.Now().UnixNano())
	raw, err := s.read()
	if err != nil {
		return err
	}
	old := s.cur.Load()
	if bytes.Equal(raw[0], old.raw[0]) && bytes.Equal(raw[1], old.raw[1]) && bytes.Equal(raw[2], old.raw[2]) {
		return nil
	}
	m, err := s.parse(raw)
	if err != nil {
		return err
	}
	s.cur.Store(m)
	attrs := []any{"cert_file", s.files.CertFile, "ca_file", s.files.CAFile}
	if m.leaf != nil {
		attrs = append(attrs, "serial", m.leaf.SerialNumber.String(), "not_after", m.leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	s.log.Info("tls material reloaded", attrs...)
	return nil
}

// current returns the material in use, first re-reading the files when the
// last check is older than CheckEvery. Only one caller re-reads; the others
// go on with what is loaded.
func (s *Source) current() *material {
	if s.clk.Now().UnixNano()-s.lastCheck.Load() >= int64(s.every) && s.checkMu.TryLock() {
		if err := s.reloadLocked(); err != nil {
			s.logRejected(err)
		}
		s.checkMu.Unlock()
	}
	return s.cur.Load()
}

// logRejected logs a change that did not load, once per content.
func (s *Source) logRejected(err error) {
	msg := []byte(err.Error())
	if bytes.Equal(msg, s.rejected) {
		return
	}
	s.rejected = msg
	s.log.Warn("tls material changed but does not load; keeping the previous one", "error", err.Error())
}

func (s *Source) read() ([3][]byte, error) {
	var raw [3][]byte
	for i, name := range []string{s.files.CertFile, s.files.KeyFile, s.files.CAFile} {
		if name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return raw, fmt.Errorf("tls: read %s: %w", name, err)
		}
		raw[i] = b
	}
	return raw, nil
}

func (s *Source) parse(raw [3][]byte) (*material, error) {
	m := &material{raw: raw}
	if s.files.CertFile != "" {
		cert, err := tls.X509KeyPair(raw[0], raw[1])
		if err != nil {
			return nil, fmt.Errorf("tls: load key pair %s and %s: %w", s.files.CertFile, s.files.KeyFile, err)
		}
		m.cert = &cert
		m.leaf = cert.Leaf
	}
	if s.files.CAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw[2]) {
			return nil, fmt.Errorf("tls: CA bundle %s holds no PEM certificate", s.files.CAFile)
		}
		m.pool = pool
	}
	return m, nil
}

// minVersion is the oldest TLS version any side accepts.
const minVersion = tls.VersionTLS12

// ServerConfig returns the configuration of a server that presents the
// current certificate and, when the Source has a CA bundle, requires every
// client to present a certificate that chains to the current bundle, is
// valid now and allows client authentication. Without a CA bundle it
// serves TLS without authenticating clients. Callers may add NextProtos;
// the configuration is theirs.
func (s *Source) ServerConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion: minVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			m := s.current()
			if m.cert == nil {
				return nil, errors.New("tls: this server has no certificate")
			}
			return m.cert, nil
		},
	}
	if s.current().pool != nil {
		// The chain is verified in VerifyConnection against the bundle
		// current at the handshake (ClientCAs is fixed once a config is in
		// use): RequireAnyClientCert makes the certificate mandatory and
		// VerifyConnection refuses one that does not verify, so no
		// connection completes without a verified client certificate.
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return s.verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, "")
		}
	}
	return cfg
}

// ClientConfig returns the configuration of one client connection to
// serverName (a DNS name or an IP address, which the server's certificate
// must carry), with the current CA bundle (or the system's roots) and the
// current certificate, if any. Build one per connection: a later one sees
// rotated material.
func (s *Source) ClientConfig(serverName string) *tls.Config {
	m := s.current()
	cfg := &tls.Config{MinVersion: minVersion, ServerName: serverName, RootCAs: m.pool}
	if m.cert != nil {
		cert := m.cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	cfg.Time = s.clk.Now
	return cfg
}

// handshakeTimeout bounds a Dialer's handshake when the dial's context has
// no deadline.
const handshakeTimeout = 10 * time.Second

// DialFunc dials a network connection (net.Dialer.DialContext's shape).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Dialer returns a DialFunc that dials with base (nil: a net.Dialer) and
// completes a TLS handshake on the connection before returning it. The
// server's certificate must carry serverName, or the host of the dialled
// address when serverName is empty. Kafka and Redis clients take it as
// their dial function, so that every new connection uses the current
// material.
func (s *Source) Dialer(base DialFunc, serverName string) DialFunc {
	if base == nil {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		base = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		name := serverName
		if name == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, fmt.Errorf("tls: dial %s: %w", addr, err)
			}
			name = host
		}
		conn, err := base(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		hctx := ctx
		if _, ok := ctx.Deadline(); !ok {
			// A server that accepts but never answers must not hold the
			// dial forever.
			var cancel context.CancelFunc
			hctx, cancel = context.WithTimeout(ctx, handshakeTimeout)
			defer cancel()
		}
		tc := tls.Client(conn, s.ClientConfig(name))
		if err := tc.HandshakeContext(hctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		return tc, nil
	}
}

// verify checks a peer's chain against the current bundle for usage;
// dnsName, when set, must be among the leaf's names.
func (s *Source) verify(chain []*x509.Certificate, usage x509.ExtKeyUsage, dnsName string) error {
	if len(chain) == 0 {
		return errors.New("tls: the peer presented no certificate")
	}
	m := s.current()
	if m.pool == nil {
		return errors.New("tls: no CA bundle to verify the peer's certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         m.pool,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   s.clk.Now(),
		KeyUsages:     []x509.ExtKeyUsage{usage},
		DNSName:       dnsName,
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := chain[0].Verify(opts); err != nil {
		return fmt.Errorf("tls: verify peer certificate %q: %w", chain[0].Subject.CommonName, err)
	}
	return nil
}

// Identity returns the service identity of the peer of a completed
// handshake: the first URI SAN of its certificate (a SPIFFE ID) or, when it
// has none, its first DNS SAN. ok is false when the peer presented no
// certificate or one with neither. Only a handshake that verified the
// certificate (every Source configuration does) makes it an identity.
func Identity(cs tls.ConnectionState) (id string, ok bool) {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return "", false
	}
	leaf := cs.PeerCertificates[0]
	if len(leaf.URIs) > 0 {
		return leaf.URIs[0].String(), true
	}
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames[0], true
	}
	return "", false
}
