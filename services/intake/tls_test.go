package intake_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/services/intake"
	"github.com/herald-health/herald/services/intake/internal/mllp"
)

// senders are the certificates of the TLS tests: the intake's own, a
// sender of the trusted CA, a sender of another CA and an expired sender.
type senders struct {
	server, good, foreign, expired mtls.Files
	pool                           *x509.CertPool
}

func newSenders(t *testing.T) senders {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, err := devca.New("intake test CA", now, time.Hour)
	require.NoError(t, err)
	require.NoError(t, ca.WriteCA(dir))
	var s senders
	s.server, err = ca.WriteLeaf(dir, devca.Leaf{Name: "intake"})
	require.NoError(t, err)
	s.good, err = ca.WriteLeaf(dir, devca.Leaf{Name: "ris"})
	require.NoError(t, err)
	s.expired, err = ca.WriteLeaf(dir, devca.Leaf{Name: "old-ris", NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)})
	require.NoError(t, err)
	other, err := devca.New("another CA", now, time.Hour)
	require.NoError(t, err)
	odir := filepath.Join(dir, "other")
	require.NoError(t, other.WriteCA(odir))
	s.foreign, err = other.WriteLeaf(odir, devca.Leaf{Name: "ris"})
	require.NoError(t, err)
	s.pool = x509.NewCertPool()
	s.pool.AddCert(ca.Certificate())
	return s
}

// client returns a TLS client configuration that trusts the intake's CA
// and presents f's certificate (none when f is zero).
func (s senders) client(t *testing.T, f mtls.Files) *tls.Config {
	t.Helper()
	c := &tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		require.NoError(t, err)
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

// The MLLP listener over TLS accepts only senders whose certificate its
// client CA signed and that is valid now.
func TestMLLPOverMutualTLS(t *testing.T) {
	s := newSenders(t)
	h := start(t, func(c *intake.Config) { c.MLLPTLS = s.server })

	c, err := mllp.Dial(context.Background(), h.addrs["mllp"], s.client(t, s.good), 30*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "AA", send(t, c, variant(t, "M-TLS")).code)

	for name, f := range map[string]mtls.Files{"no certificate": {}, "another CA": s.foreign, "expired": s.expired} {
		t.Run(name, func(t *testing.T) {
			c, err := mllp.Dial(context.Background(), h.addrs["mllp"], s.client(t, f), 10*time.Second)
			if err == nil {
				defer c.Close()
				_, err = c.Send(variant(t, "M-REFUSED"))
			}
			require.Error(t, err, "a sender with %s must be refused", name)
		})
	}
	// A plain-TCP client gets no ACK from a TLS listener.
	_, err = h.dial(t).Send(variant(t, "M-PLAIN"))
	require.Error(t, err)
	require.Len(t, h.events(t), 1, "only the authenticated sender's message is on the log")
}

// The FHIR listener is HTTPS with client certificates: an authenticated
// sender's report is accepted, anyone else is refused at the handshake.
func TestFHIROverMutualTLS(t *testing.T) {
	s := newSenders(t)
	h := start(t, func(c *intake.Config) { c.FHIRTLS = s.server })
	url := "https://" + h.addrs["fhir"] + "/fhir/RZZ/DiagnosticReport"
	post := func(f mtls.Files) (*http.Response, error) {
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: s.client(t, f)}}
		defer c.CloseIdleConnections()
		return c.Post(url, "application/fhir+json", bytes.NewReader(example(t, "diagnosticreport_critical.json")))
	}

	resp, err := post(s.good)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	for name, f := range map[string]mtls.Files{"no certificate": {}, "another CA": s.foreign, "expired": s.expired} {
		t.Run(name, func(t *testing.T) {
			resp, err := post(f)
			if err == nil {
				resp.Body.Close()
			}
			require.Error(t, err, "a sender with %s must be refused", name)
		})
	}
	// Plain HTTP to the HTTPS listener is answered 400 at most.
	if resp, err := http.Post("http://"+h.addrs["fhir"]+"/fhir/RZZ/DiagnosticReport", "application/fhir+json", bytes.NewReader(example(t, "diagnosticreport_critical.json"))); err == nil {
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	}
	require.Len(t, h.events(t), 1, "only the authenticated sender's report is on the log")
}
