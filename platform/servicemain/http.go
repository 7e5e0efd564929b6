package servicemain

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// HTTPLimits bound what one client may hold of an HTTP listener: how long
// it may take to send its headers and its request, how long a response may
// take to write, how long an idle keep-alive connection stays open, and how
// large its headers may be. Every HTTP server of a service has them
// (slow-loris and header floods cannot hold its connections).
type HTTPLimits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// ShutdownGrace bounds a graceful stop before connections are cut.
	ShutdownGrace time.Duration
}

// DefaultHTTPLimits suit a small API or page: headers within 5 s, a
// request within 30 s, a response within 30 s, idle connections closed
// after 2 minutes, headers at most 64 KiB.
func DefaultHTTPLimits() HTTPLimits {
	return HTTPLimits{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ShutdownGrace:     10 * time.Second,
	}
}

// withDefaults fills every unset limit from DefaultHTTPLimits, so that no
// server runs without one.
func (l HTTPLimits) withDefaults() HTTPLimits {
	d := DefaultHTTPLimits()
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = d.ReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.ShutdownGrace <= 0 {
		l.ShutdownGrace = d.ShutdownGrace
	}
	return l
}

// HTTPServer is one HTTP listener of a service, bound at once by
// ListenHTTP (so its address is known and a busy port fails New), served by
// Serve (a Lifecycle task) and released by Close (a Lifecycle release).
type HTTPServer struct {
	srv   *http.Server
	ln    net.Listener
	grace time.Duration
}

// ListenHTTP binds addr and returns a server of h with limits (unset ones
// take DefaultHTTPLimits). With tlsCfg the listener is HTTPS (and, when
// tlsCfg requires client certificates, mutual TLS).
func ListenHTTP(addr string, h http.Handler, tlsCfg *tls.Config, limits HTTPLimits) (*HTTPServer, error) {
	limits = limits.withDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for HTTP on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: limits.ReadHeaderTimeout,
		ReadTimeout:       limits.ReadTimeout,
		WriteTimeout:      limits.WriteTimeout,
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
	}
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg
		ln = tls.NewListener(ln, tlsCfg)
	}
	return &HTTPServer{srv: srv, ln: ln, grace: limits.ShutdownGrace}, nil
}

// Addr returns the bound address.
func (s *HTTPServer) Addr() string { return s.ln.Addr().String() }

// Server returns the http.Server (its limits, for tests).
func (s *HTTPServer) Server() *http.Server { return s.srv }

// Serve serves until ctx is done, then shuts down gracefully within the
// grace period. It returns nil after a requested stop.
func (s *HTTPServer) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve HTTP on %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.grace)
	defer cancel()
	_ = s.srv.Shutdown(sctx)
	<-errc
	return nil
}

// Close stops the server at once and releases its listener, whether or not
// it was ever served; its signature fits Lifecycle.OnStop.
func (s *HTTPServer) Close(context.Context) error {
	err := s.srv.Close()
	if lerr := s.ln.Close(); lerr != nil && !errors.Is(lerr, net.ErrClosed) && err == nil {
		err = lerr
	}
	return err
}
