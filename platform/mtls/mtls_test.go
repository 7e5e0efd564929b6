package mtls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/mtls"
)

// echoServer accepts TLS connections with cfg, completes the handshake and
// answers each connection with the identity of its client.
func echoServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tc.Handshake(); err != nil {
					return
				}
				id, _ := mtls.Identity(tc.ConnectionState())
				_, _ = io.WriteString(tc, id+"\n")
			}()
		}
	}()
	return l.Addr().String()
}

// exchange dials addr with dial and reads the server's answer: an error
// when the server refused the client.
func exchange(dial mtls.DialFunc, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", errors.New("server closed the connection without answering")
	}
	return strings.TrimSpace(string(b)), nil
}

func load(t *testing.T, f mtls.Files, opts mtls.Options) *mtls.Source {
	t.Helper()
	s, err := mtls.Load(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServerRequiresAValidClientCertificate(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	now := time.Now()
	ca, err := devca.New("trusted CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	server, err := ca.WriteLeaf(dir, devca.Leaf{Name: "rules"})
	if err != nil {
		t.Fatal(err)
	}
	good, err := ca.WriteLeaf(dir, devca.Leaf{Name: "notification"})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.WriteLeaf(dir, devca.Leaf{Name: "expired", NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := devca.WriteDir(other, now, time.Hour, "notification")
	if err != nil {
		t.Fatal(err)
	}
	addr := echoServer(t, load(t, server, mtls.Options{}).ServerConfig())

	// Every client trusts the right CA, so only its own certificate differs.
	trust := func(f mtls.Files) mtls.Files { f.CAFile = server.CAFile; return f }
	cases := []struct {
		name  string
		files mtls.Files
		ok    bool
	}{
		{"certificate from the trusted CA", good, true},
		{"no certificate", mtls.Files{CAFile: server.CAFile}, false},
		{"certificate from another CA", trust(foreign["notification"]), false},
		{"expired certificate", trust(expired), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := exchange(load(t, c.files, mtls.Options{}).Dialer(nil, ""), addr)
			if c.ok {
				if err != nil || id != devca.SPIFFEID("notification") {
					t.Fatalf("got identity %q, error %v; want %q", id, err, devca.SPIFFEID("notification"))
				}
				return
			}
			if err == nil {
				t.Fatalf("server answered %q; want the client refused", id)
			}
		})
	}
}

func TestClientVerifiesTheServer(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	files, err := devca.WriteDir(dir, time.Now(), time.Hour, "rules", "notification")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := devca.WriteDir(other, time.Now(), time.Hour, "rules")
	if err != nil {
		t.Fatal(err)
	}
	addr := echoServer(t, load(t, files["rules"], mtls.Options{}).ServerConfig())
	client := load(t, files["notification"], mtls.Options{})
	if _, err := exchange(client.Dialer(nil, "rules"), addr); err != nil {
		t.Fatalf("dial expecting the server's name: %v", err)
	}
	if _, err := exchange(client.Dialer(nil, "intake"), addr); err == nil {
		t.Fatal("a server whose certificate does not name intake was accepted as intake")
	}
	impostor := echoServer(t, load(t, foreign["rules"], mtls.Options{}).ServerConfig())
	if _, err := exchange(client.Dialer(nil, ""), impostor); err == nil {
		t.Fatal("a server with a certificate from another CA was accepted")
	}
}

func TestLoadNamesTheFileAtFault(t *testing.T) {
	dir := t.TempDir()
	files, err := devca.WriteDir(dir, time.Now(), time.Hour, "rules", "intake")
	if err != nil {
		t.Fatal(err)
	}
	mismatched := files["rules"]
	mismatched.KeyFile = files["intake"].KeyFile
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		files mtls.Files
		want  string
	}{
		{"missing file", mtls.Files{CAFile: filepath.Join(dir, "nope.crt")}, "nope.crt"},
		{"key of another certificate", mismatched, "rules.crt"},
		{"CA bundle without a certificate", mtls.Files{CAFile: garbage}, "garbage.pem"},
		{"certificate without key", mtls.Files{CertFile: files["rules"].CertFile}, "together"},
		{"nothing", mtls.Files{}, "no certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := mtls.Load(c.files, mtls.Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

func TestChangedFilesLoadAfterCheckEvery(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := devca.New("CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	f, err := ca.WriteLeaf(dir, devca.Leaf{Name: "rules"})
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewSimulated(now)
	src := load(t, f, mtls.Options{Clock: clk, CheckEvery: time.Second})
	first := src.Leaf().SerialNumber

	if _, err := ca.WriteLeaf(dir, devca.Leaf{Name: "rules"}); err != nil {
		t.Fatal(err)
	}
	if got := serialServed(t, src); got != first.String() {
		t.Fatalf("before CheckEvery passed: served %s, want the old %s", got, first)
	}
	clk.Advance(time.Second)
	second := serialServed(t, src)
	if second == first.String() {
		t.Fatal("after CheckEvery: the renewed certificate was not picked up")
	}

	// A half-written renewal (a certificate that does not match the key)
	// keeps the certificate in use, and Reload says why.
	other, _, err := ca.Issue(devca.Leaf{Name: "rules"})
	if err != nil {
		t.Fatal(err)
	}
	if err := devca.WriteFileAtomic(f.CertFile, other, 0o644); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if got := serialServed(t, src); got != second {
		t.Fatalf("after a mismatched renewal: served %s, want the previous %s kept", got, second)
	}
	if err := src.Reload(); err == nil || !strings.Contains(err.Error(), f.CertFile) {
		t.Fatalf("Reload of a mismatched pair: got %v, want an error naming %s", err, f.CertFile)
	}
}

// serialServed is the serial of the certificate src serves to a new
// connection.
func serialServed(t *testing.T, src *mtls.Source) string {
	t.Helper()
	cert, err := src.ServerConfig().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf.SerialNumber.String()
}

func TestIdentityPrefersTheURI(t *testing.T) {
	dir := t.TempDir()
	ca, err := devca.New("CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	server, err := ca.WriteLeaf(dir, devca.Leaf{Name: "rules"})
	if err != nil {
		t.Fatal(err)
	}
	dnsOnly, err := ca.WriteLeaf(dir, devca.Leaf{Name: "heraldctl", NoSPIFFE: true})
	if err != nil {
		t.Fatal(err)
	}
	addr := echoServer(t, load(t, server, mtls.Options{}).ServerConfig())
	id, err := exchange(load(t, dnsOnly, mtls.Options{}).Dialer(nil, ""), addr)
	if err != nil || id != "heraldctl" {
		t.Fatalf("identity of a certificate without URI SAN: got %q (%v), want its DNS name", id, err)
	}
	if _, ok := mtls.Identity(tls.ConnectionState{}); ok {
		t.Fatal("a connection without a peer certificate has an identity")
	}
}

// The dialer must not leave a half-open connection behind when the
// handshake fails.
func TestDialerClosesAfterAFailedHandshake(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	closed := make(chan struct{})
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("HTTP/1.0 400 not TLS\r\n\r\n"))
		_, _ = io.Copy(io.Discard, c) // returns when the client closes
		close(closed)
	}()
	files, err := devca.WriteDir(t.TempDir(), time.Now(), time.Hour, "notification")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exchange(load(t, files["notification"], mtls.Options{}).Dialer(nil, ""), l.Addr().String()); err == nil {
		t.Fatal("handshake with a plaintext server succeeded")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the client kept the connection open after the failed handshake")
	}
}
