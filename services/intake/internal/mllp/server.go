package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/herald-health/herald/platform/mtls"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Handler answers one message with its acknowledgement. It is called with
// the frame's bytes (valid only during the call) and must return the ACK to
// send; it runs to completion even while the server shuts down, so an
// accepted message is always acknowledged. Oversize is called for a frame
// over the bound with its first bytes.
type Handler interface {
	Handle(ctx context.Context, msg []byte) []byte
	Oversize(ctx context.Context, head []byte, limit int) []byte
}

// ServerConfig bounds the server.
type ServerConfig struct {
	// MaxFrame is the largest message in bytes.
	MaxFrame int
	// IdleTimeout closes a connection on which no complete frame arrives
	// for this long (idle or half-open peers, slow senders).
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one ACK.
	WriteTimeout time.Duration
	// HandleTimeout bounds handling one message (including the durable
	// append); a message that runs out is answered AR.
	HandleTimeout time.Duration
	// MaxConns is the most concurrent connections; more are closed at once.
	MaxConns int
	// MaxConnsPerSender is the most concurrent connections from one
	// sender (remote IP address), so that one sender cannot take every
	// slot; more are closed at once (0: MaxConns).
	MaxConnsPerSender int
	// FrameTimeout bounds receiving the rest of a frame once its start
	// block has arrived, separately from IdleTimeout (the wait for a frame
	// to start): a sender that trickles a frame byte by byte is cut off
	// (0: IdleTimeout).
	FrameTimeout time.Duration
	// TLS, if set, makes the listener TLS.
	TLS *tls.Config
}

// Server accepts MLLP connections and answers each frame in order
// (original acknowledgement mode: a sender waits for each ACK).
type Server struct {
	cfg     ServerConfig
	ln      net.Listener
	handler Handler
	log     *slog.Logger

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	bySender map[string]int
	wg       sync.WaitGroup
	slots    chan struct{}
}

// Listen binds addr.
func Listen(addr string, cfg ServerConfig, h Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen mllp %s: %w", addr, err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if cfg.MaxConnsPerSender <= 0 || cfg.MaxConnsPerSender > cfg.MaxConns {
		cfg.MaxConnsPerSender = cfg.MaxConns
	}
	if cfg.FrameTimeout <= 0 {
		cfg.FrameTimeout = cfg.IdleTimeout
	}
	return &Server{cfg: cfg, ln: ln, handler: h, log: log, conns: map[net.Conn]struct{}{}, bySender: map[string]int{},
		slots: make(chan struct{}, cfg.MaxConns)}, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve accepts connections until ctx is done, then stops accepting, lets
// each connection finish the message it is handling (and send its ACK) and
// closes it. It returns when every connection is closed.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		_ = s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			// Wake readers blocked waiting for a frame; a handler in
			// progress still writes its ACK (write deadlines are set anew).
			_ = c.SetReadDeadline(time.Now())
		}
		s.mu.Unlock()
	}()
	var err error
	for {
		c, aerr := s.ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				var ne net.Error
				if errors.As(aerr, &ne) && ne.Timeout() {
					continue
				}
				err = fmt.Errorf("accept mllp: %w", aerr)
			}
			break
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.log.Warn("mllp connection refused: too many connections", "max", s.cfg.MaxConns)
			_ = c.Close()
			continue
		}
		sender := senderOf(c)
		s.mu.Lock()
		if s.bySender[sender] >= s.cfg.MaxConnsPerSender {
			s.mu.Unlock()
			<-s.slots
			s.log.Warn("mllp connection refused: too many connections from one sender", "max_per_sender", s.cfg.MaxConnsPerSender)
			_ = c.Close()
			continue
		}
		s.bySender[sender]++
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			s.serveConn(ctx, c)
			s.mu.Lock()
			delete(s.conns, c)
			if s.bySender[sender]--; s.bySender[sender] <= 0 {
				delete(s.bySender, sender)
			}
			s.mu.Unlock()
			_ = c.Close()
		}()
	}
	s.wg.Wait()
	return err
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetKeepAlive(true)
		_ = tc.SetKeepAlivePeriod(30 * time.Second)
	}
	r := NewReader(c, s.cfg.MaxFrame)
	// Waiting for a frame to start is bounded by the idle timeout; once it
	// has started, the rest must arrive within the frame timeout.
	r.OnFrameStart(func() { _ = c.SetReadDeadline(time.Now().Add(s.cfg.FrameTimeout)) })
	for ctx.Err() == nil {
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if ctx.Err() != nil { // shutdown raced with the deadline above
			return
		}
		frame, err := r.ReadFrame()
		hctx, cancel := context.WithTimeout(withPeer(context.WithoutCancel(ctx), c), s.cfg.HandleTimeout)
		var ack []byte
		var over *OversizeError
		switch {
		case err == nil:
			ack = s.handler.Handle(hctx, frame)
		case errors.As(err, &over):
			ack = s.handler.Oversize(hctx, over.Head, over.Limit)
		default:
			cancel()
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				s.log.Info("mllp connection closed", "remote", c.RemoteAddr().String(), "reason", errorKind(err))
			}
			return
		}
		cancel()
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if err := WriteFrame(c, ack); err != nil {
			s.log.Info("mllp ACK not written", "remote", c.RemoteAddr().String(), "reason", errorKind(err))
			return
		}
	}
}

// errorKind describes a connection error without echoing any data.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "idle or frame timeout"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "closed inside a frame"
	case errors.Is(err, ErrMalformed):
		return "not MLLP"
	}
	return "connection error"
}

// Close releases the listener (Serve then returns once its connections
// are done); for a server that was never served, or a failed start.
func (s *Server) Close() error {
	if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close mllp listener: %w", err)
	}
	return nil
}

type peerKey struct{}

// withPeer puts the identity of c's verified client certificate in ctx
// (after the first frame, the TLS handshake is complete).
func withPeer(ctx context.Context, c net.Conn) context.Context {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ctx
	}
	if id, ok := mtls.Identity(tc.ConnectionState()); ok {
		return context.WithValue(ctx, peerKey{}, id)
	}
	return ctx
}

// PeerIdentity returns the identity of the sender of the message a
// Handler is handling, from the client certificate the TLS listener
// verified (mtls.Identity); ok is false on a plaintext listener or without
// a certificate.
func PeerIdentity(ctx context.Context) (id string, ok bool) {
	id, ok = ctx.Value(peerKey{}).(string)
	return id, ok
}

// senderOf is the remote IP address of c: the unit of the per-sender cap.
func senderOf(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}
