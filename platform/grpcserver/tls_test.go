package grpcserver

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/telemetry"
)

// identityService answers /test.Probe/Call with the caller's identity and
// the serial of its certificate in the response header.
func identityService() *grpc.ServiceDesc {
	return testServiceCtx(func(ctx context.Context) error {
		id, ok := PeerIdentity(ctx)
		if !ok {
			return status.Error(codes.Unauthenticated, "no peer identity")
		}
		serial := ""
		if p, ok := peer.FromContext(ctx); ok {
			if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
				serial = info.State.PeerCertificates[0].SerialNumber.String()
			}
		}
		return grpc.SetHeader(ctx, metadata.Pairs("peer-identity", id, "peer-serial", serial))
	})
}

// serveTLS starts a server with src and returns its address.
func serveTLS(t *testing.T, src *mtls.Source) string {
	t.Helper()
	s, err := New(Config{Addr: "127.0.0.1:0"}, logging.Discard(), telemetry.Nop("test"), WithTLS(src))
	if err != nil {
		t.Fatal(err)
	}
	s.GRPC().RegisterService(identityService(), struct{}{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s.Addr()
}

// observed is what one call saw of both ends.
type observed struct {
	identity     string // the client's identity, as the server saw it
	clientSerial string // the client's certificate, as the server saw it
	serverSerial string // the server's certificate, as the client saw it
}

func callTLS(conn *grpc.ClientConn) (observed, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var hdr metadata.MD
	var p peer.Peer
	err := conn.Invoke(ctx, "/test.Probe/Call", &emptypb.Empty{}, &emptypb.Empty{}, grpc.Header(&hdr), grpc.Peer(&p))
	var o observed
	if v := hdr.Get("peer-identity"); len(v) == 1 {
		o.identity = v[0]
	}
	if v := hdr.Get("peer-serial"); len(v) == 1 {
		o.clientSerial = v[0]
	}
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
		o.serverSerial = info.State.PeerCertificates[0].SerialNumber.String()
	}
	return o, err
}

// callOnce dials target afresh (a new handshake), calls once and closes.
func callOnce(target string, src *mtls.Source) (observed, error) {
	conn, err := Dial(context.Background(), target, telemetry.Nop("test"), ClientTLS(src, ""))
	if err != nil {
		return observed{}, err
	}
	defer conn.Close()
	return callTLS(conn)
}

func mustLoad(t *testing.T, f mtls.Files, clk clock.Clock) *mtls.Source {
	t.Helper()
	src, err := mtls.Load(f, mtls.Options{Clock: clk, CheckEvery: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestMutualTLSRefusesClientsWithoutAValidCertificate(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	now := time.Now()
	ca, err := devca.New("mesh CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	leaf := func(l devca.Leaf) mtls.Files {
		f, err := ca.WriteLeaf(dir, l)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	server := leaf(devca.Leaf{Name: "rules"})
	good := leaf(devca.Leaf{Name: "notification"})
	expired := leaf(devca.Leaf{Name: "expired", NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Second)})
	foreign, err := devca.WriteDir(other, now, time.Hour, "notification")
	if err != nil {
		t.Fatal(err)
	}
	foreignLeaf := foreign["notification"]
	foreignLeaf.CAFile = server.CAFile // it trusts the server; the server does not trust it
	addr := serveTLS(t, mustLoad(t, server, nil))

	o, err := callOnce(addr, mustLoad(t, good, nil))
	if err != nil || o.identity != devca.SPIFFEID("notification") {
		t.Fatalf("client with a valid certificate: got %+v, %v; want identity %s", o, err, devca.SPIFFEID("notification"))
	}
	refused := []struct {
		name string
		dial func() (*grpc.ClientConn, error)
	}{
		{"plaintext client", func() (*grpc.ClientConn, error) { return Dial(context.Background(), addr, telemetry.Nop("test")) }},
		{"no certificate", func() (*grpc.ClientConn, error) {
			return Dial(context.Background(), addr, telemetry.Nop("test"), ClientTLS(mustLoad(t, mtls.Files{CAFile: server.CAFile}, nil), ""))
		}},
		{"certificate from another CA", func() (*grpc.ClientConn, error) {
			return Dial(context.Background(), addr, telemetry.Nop("test"), ClientTLS(mustLoad(t, foreignLeaf, nil), ""))
		}},
		{"expired certificate", func() (*grpc.ClientConn, error) {
			return Dial(context.Background(), addr, telemetry.Nop("test"), ClientTLS(mustLoad(t, expired, nil), ""))
		}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			conn, err := c.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if o, err := callTLS(conn); status.Code(err) != codes.Unavailable {
				t.Fatalf("call: got %+v, %v; want Unavailable (the handshake refused)", o, err)
			}
		})
	}
}

func TestServerNameIsVerified(t *testing.T) {
	files, err := devca.WriteDir(t.TempDir(), time.Now(), time.Hour, "rules", "notification")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, mustLoad(t, files["rules"], nil))
	client := mustLoad(t, files["notification"], nil)
	for name, wantOK := range map[string]bool{"rules": true, "acknowledgement": false} {
		conn, err := Dial(context.Background(), addr, telemetry.Nop("test"), ClientTLS(client, name))
		if err != nil {
			t.Fatal(err)
		}
		_, err = callTLS(conn)
		_ = conn.Close()
		if (err == nil) != wantOK {
			t.Fatalf("calling %s expecting server name %q: got %v, want ok=%v", addr, name, err, wantOK)
		}
	}
}

// TestCertificatesRotateUnderTraffic runs calls on long-lived and on
// fresh connections while the CA and both ends' certificates rotate the
// way cert-manager rotates them (new CA added to the bundles, leaves
// re-issued from it, old CA removed), and requires that no call fails.
func TestCertificatesRotateUnderTraffic(t *testing.T) {
	root := t.TempDir()
	serverDir, clientDir, oldDir := filepath.Join(root, "rules"), filepath.Join(root, "notification"), filepath.Join(root, "old")
	now := time.Now()
	clk := clock.NewSimulated(now)
	ca1, err := devca.New("CA 1", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{serverDir, clientDir, oldDir} {
		if err := ca1.WriteCA(d); err != nil {
			t.Fatal(err)
		}
	}
	server, err := ca1.WriteLeaf(serverDir, devca.Leaf{Name: "rules"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca1.WriteLeaf(clientDir, devca.Leaf{Name: "notification"})
	if err != nil {
		t.Fatal(err)
	}
	oldClient, err := ca1.WriteLeaf(oldDir, devca.Leaf{Name: "notification"})
	if err != nil {
		t.Fatal(err)
	}
	serverSrc, clientSrc := mustLoad(t, server, clk), mustLoad(t, client, clk)
	addr := serveTLS(t, serverSrc)
	first, err := callOnce(addr, clientSrc)
	if err != nil {
		t.Fatal(err)
	}

	// Traffic: two callers on one long-lived connection, two that dial
	// for every call (each a handshake with the material of the moment).
	var calls, failures atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	long, err := Dial(context.Background(), addr, telemetry.Nop("test"), ClientTLS(clientSrc, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	for i := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if i < 2 {
					_, err = callTLS(long)
				} else {
					_, err = callOnce(addr, clientSrc)
				}
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					lastErr.Store(err)
				}
			}
		})
	}
	// trafficFlows waits until some calls have been made since it was
	// called, so every step of the rotation happens under traffic.
	trafficFlows := func() {
		t.Helper()
		from := calls.Load()
		deadline := time.Now().Add(30 * time.Second)
		for calls.Load() < from+20 {
			if time.Now().After(deadline) {
				t.Fatal("no traffic")
			}
			time.Sleep(time.Millisecond)
		}
	}
	trafficFlows()

	// 1. A new CA joins both bundles. Reload stands in for waiting out
	// CheckEvery on every replica before the next step, as a rotation
	// procedure does.
	ca2, err := devca.New("CA 2", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(append([]byte{}, ca1.CertPEM()...), ca2.CertPEM()...)
	for _, f := range []string{server.CAFile, client.CAFile} {
		if err := devca.WriteFileAtomic(f, bundle, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Second)
	for _, src := range []*mtls.Source{serverSrc, clientSrc} {
		if err := src.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	trafficFlows()

	// 2. Both leaves are re-issued by the new CA; the next handshakes after
	// CheckEvery pick them up with no reload asked for.
	if _, err := ca2.WriteLeaf(serverDir, devca.Leaf{Name: "rules"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca2.WriteLeaf(clientDir, devca.Leaf{Name: "notification"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	var rotated observed
	for deadline := time.Now().Add(30 * time.Second); ; {
		if rotated, err = callOnce(addr, clientSrc); err == nil && rotated.serverSerial != first.serverSerial && rotated.clientSerial != first.clientSerial {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificates were not used: last call %+v, %v; first %+v", rotated, err, first)
		}
		time.Sleep(time.Millisecond)
	}
	if rotated.serverSerial != serverSrc.Leaf().SerialNumber.String() || rotated.clientSerial != clientSrc.Leaf().SerialNumber.String() {
		t.Fatalf("after renewal: saw %+v, want the server's %s and the client's %s", rotated, serverSrc.Leaf().SerialNumber, clientSrc.Leaf().SerialNumber)
	}
	trafficFlows()

	// 3. The old CA leaves the bundles.
	for _, f := range []string{server.CAFile, client.CAFile} {
		if err := devca.WriteFileAtomic(f, ca2.CertPEM(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Second)
	trafficFlows()

	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d calls failed during rotation; last: %v", n, calls.Load(), lastErr.Load())
	}

	// A client still holding a certificate of the old CA is refused now.
	if err := serverSrc.Reload(); err != nil {
		t.Fatal(err)
	}
	if o, err := callOnce(addr, mustLoad(t, oldClient, clk)); err == nil {
		t.Fatalf("a certificate of the removed CA was accepted: %+v", o)
	}
	// And the files on disk are what the sources serve.
	want, err := os.ReadFile(server.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, ca2.CertPEM()) {
		t.Fatal("test set-up: server bundle not rewritten")
	}
}

func TestPeerIdentityWithoutTLS(t *testing.T) {
	var got string
	var ok bool
	conn := startWith(t, testServiceCtx(func(ctx context.Context) error {
		got, ok = PeerIdentity(ctx)
		return nil
	}))
	if err := call(conn); err != nil {
		t.Fatal(err)
	}
	if ok || got != "" {
		t.Fatalf("plaintext call: identity %q, ok=%v; want none", got, ok)
	}
	if _, ok := PeerIdentity(context.Background()); ok {
		t.Fatal("a context without a peer has an identity")
	}
}

func TestClientFlagsAndPlaintextFallback(t *testing.T) {
	var c ClientConfig
	fs := flag.NewFlagSet("notification", flag.ContinueOnError)
	c.RegisterFlags(fs, "rules")
	if err := fs.Parse([]string{"-rules-addr=dns:///rules-headless:9090", "-rules-server-name=rules.herald.svc"}); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "dns:///rules-headless:9090" || c.ServerName != "rules.herald.svc" {
		t.Fatalf("flags: got %+v", c)
	}
	if err := (ClientConfig{}).Validate("rules"); err == nil || !strings.Contains(err.Error(), "rules-addr") {
		t.Fatalf("Validate of an empty peer: got %v, want rules-addr named", err)
	}

	// A service without TLS (Server.TLS() is nil, a development system
	// with -insecure) calls its peers in plaintext.
	s, err := New(Config{Addr: "127.0.0.1:0"}, logging.Discard(), telemetry.Nop("test"))
	if err != nil {
		t.Fatal(err)
	}
	if s.TLS() != nil {
		t.Fatal("a server without TLS files has a TLS source")
	}
	s.GRPC().RegisterService(testService(func() error { return nil }), struct{}{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	plain, err := Dial(context.Background(), s.Addr(), telemetry.Nop("test"), ClientTLS(s.TLS(), ""))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := call(plain); err != nil {
		t.Fatalf("plaintext call with a nil TLS source: %v", err)
	}
}
