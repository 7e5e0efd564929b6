package grpcserver

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
)

// TestKeepaliveEnforcement: a client that pings more often than
// MinClientPing (a cheap flood: each ping costs the server a write) is
// sent GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and disconnected. The
// client is a bare HTTP/2 framer, because grpc-go's own client will not
// ping more often than every 10 s.
func TestKeepaliveEnforcement(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"}, logging.Discard(), telemetry.Nop("test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A generous bound for a loaded machine; the test waits for frames,
	// not for time.
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Far more pings than the strikes the server forgives (two), back to
	// back: every one after the first comes sooner than MinClientPing.
	for i := range 10 {
		if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			break // the server may already have hung up
		}
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended without GOAWAY too_many_pings: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeEnhanceYourCalm || string(f.DebugData()) != "too_many_pings" {
				t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", f.ErrCode, f.DebugData())
			}
			return
		}
	}
}
