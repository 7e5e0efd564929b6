// Package harness runs Herald's services as real processes and gives the
// suites real protocol peers to observe them with: an SMTP server, a webhook
// receiver and an OTLP/gRPC trace receiver, all in-process on loopback.
package harness

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Mail is one message accepted by the SMTP sink.
type Mail struct {
	From string
	To   []string
	Data []byte
	At   time.Time
}

// SMTPSink is a real SMTP server (github.com/emersion/go-smtp) that keeps
// every message it accepts.
type SMTPSink struct {
	Addr string

	mu    sync.Mutex
	mails []Mail
	srv   *smtp.Server
}

// NewSMTPSink starts an SMTP server on a free loopback port; it stops when
// the test ends. It accepts plain connections and any AUTH-less submission.
func NewSMTPSink(t testing.TB) *SMTPSink {
	t.Helper()
	s := &SMTPSink{}
	srv := smtp.NewServer(s)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for smtp sink: %v", err)
	}
	s.Addr = l.Addr().String()
	s.srv = srv
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// Mails returns a copy of the messages accepted so far.
func (s *SMTPSink) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// NewSession implements smtp.Backend.
func (s *SMTPSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{sink: s}, nil }

type smtpSession struct {
	sink *SMTPSink
	from string
	to   []string
}

func (x *smtpSession) Reset()        { x.from, x.to = "", nil }
func (x *smtpSession) Logout() error { return nil }
func (x *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}
func (x *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}
func (x *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.sink.mu.Lock()
	x.sink.mails = append(x.sink.mails, Mail{From: x.from, To: append([]string(nil), x.to...), Data: b, At: time.Now()})
	x.sink.mu.Unlock()
	return nil
}

// Hook is one request received by the webhook sink.
type Hook struct {
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
}

// WebhookSink is an HTTP server that records every request and answers 200.
type WebhookSink struct {
	URL string

	mu    sync.Mutex
	hooks []Hook
}

// NewWebhookSink starts the receiver; it stops when the test ends.
func NewWebhookSink(t testing.TB) *WebhookSink {
	t.Helper()
	s := &WebhookSink{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, r.Body)
		s.mu.Lock()
		s.hooks = append(s.hooks, Hook{Path: r.URL.Path, Header: r.Header.Clone(), Body: buf.Bytes(), At: time.Now()})
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"id":"ok"}`))
	}))
	s.URL = srv.URL
	t.Cleanup(srv.Close)
	return s
}

// Hooks returns a copy of the requests received so far.
func (s *WebhookSink) Hooks() []Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Hook(nil), s.hooks...)
}
