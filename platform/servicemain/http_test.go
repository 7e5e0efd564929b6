package servicemain

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Every HTTP server a service makes has read, write and idle timeouts and
// a header limit, the defaults filling what the service left unset; a
// client that sends headers over the limit is answered 431, and a client
// that never finishes its headers is cut off.
func TestHTTPServersAreBounded(t *testing.T) {
	s, err := ListenHTTP("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), nil,
		HTTPLimits{ReadHeaderTimeout: 200 * time.Millisecond, MaxHeaderBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	srv := s.Server()
	d := DefaultHTTPLimits()
	if srv.ReadTimeout != d.ReadTimeout || srv.WriteTimeout != d.WriteTimeout || srv.IdleTimeout != d.IdleTimeout {
		t.Fatalf("unset limits not defaulted: read %v write %v idle %v", srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout)
	}
	if srv.ReadHeaderTimeout != 200*time.Millisecond || srv.MaxHeaderBytes != 1024 {
		t.Fatalf("given limits not applied: %v %d", srv.ReadHeaderTimeout, srv.MaxHeaderBytes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addr()+"/", nil)
	req.Header.Set("X-Flood", strings.Repeat("a", 8<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("8 KiB of headers to a 1 KiB limit: got %d, want 431", resp.StatusCode)
	}

	// A slow client that starts a request and never ends its headers is
	// disconnected (the read fails once the server closes).
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := conn.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("a client that never finished its headers was still connected after 30 s")
			}
			break
		}
	}
}
