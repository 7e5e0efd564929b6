package mllp

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/logging"
)

type echoHandler struct{}

func (echoHandler) Handle(_ context.Context, msg []byte) []byte { return []byte("ACK") }
func (echoHandler) Oversize(_ context.Context, _ []byte, _ int) []byte {
	return []byte("AR")
}

func serveTest(t *testing.T, cfg ServerConfig) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", cfg, echoHandler{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// closedWithin reports whether the server closes c (a read returns EOF or
// a reset) before within passes.
func closedWithin(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return false
		}
		return true
	}
}

// One sender cannot take every connection slot: beyond its cap its
// connections are closed at once, while another sender still gets in.
func TestPerSenderConnectionCap(t *testing.T) {
	s := serveTest(t, ServerConfig{MaxFrame: 1024, IdleTimeout: time.Minute, WriteTimeout: 5 * time.Second,
		HandleTimeout: 5 * time.Second, MaxConns: 10, MaxConnsPerSender: 2})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A round trip proves the connection was accepted and counted.
		if _, err := c.Write([]byte("\x0bMSH|x\x1c\r")); err != nil {
			t.Fatal(err)
		}
		r := NewReader(c, 1024)
		if _, err := r.ReadFrame(); err != nil {
			t.Fatalf("connection %d within the cap: %v", len(held)+1, err)
		}
		held = append(held, c)
	}
	third, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if !closedWithin(third, 30*time.Second) {
		t.Fatal("a third connection from the same sender was kept")
	}
	// Another sender (another source address) is served.
	other, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial("tcp", s.Addr())
	if err != nil {
		t.Skipf("no second loopback address to dial from: %v", err)
	}
	defer other.Close()
	if _, err := other.Write([]byte("\x0bMSH|y\x1c\r")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewReader(other, 1024).ReadFrame(); err != nil {
		t.Fatalf("another sender refused: %v", err)
	}
}

// A frame that has started must finish within the frame timeout, however
// long the idle timeout: a sender trickling bytes is cut off.
func TestFrameDeadlineSeparateFromIdleTimeout(t *testing.T) {
	s := serveTest(t, ServerConfig{MaxFrame: 1024, IdleTimeout: time.Hour, FrameTimeout: 300 * time.Millisecond,
		WriteTimeout: 5 * time.Second, HandleTimeout: 5 * time.Second, MaxConns: 10})
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("\x0bMSH|slow")); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(c, 30*time.Second) {
		t.Fatal("an unfinished frame held the connection beyond the frame timeout")
	}

	// An idle connection (no frame started) is not cut by the frame timeout.
	idle, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if closedWithin(idle, time.Second) {
		t.Fatal("an idle connection was closed by the frame timeout")
	}
	_ = idle.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := idle.Write([]byte("\x0bMSH|z\x1c\r")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewReader(idle, 1024).ReadFrame(); err != nil {
		t.Fatalf("the idle connection is not served: %v", err)
	}
}
