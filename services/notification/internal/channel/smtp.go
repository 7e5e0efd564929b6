package channel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTPConfig configures message submission (port 587 style: STARTTLS, then
// AUTH PLAIN).
type SMTPConfig struct {
	Addr     string
	From     string
	Username string
	Password string
	// StartTLS requires STARTTLS before AUTH and MAIL.
	StartTLS bool
	// TLS is the client TLS configuration for STARTTLS (ServerName defaults
	// to the host of Addr).
	TLS *tls.Config
	// HeloName is the EHLO name; default "localhost".
	HeloName string
	// MessageIDDomain is the right side of Message-ID; default "herald.invalid".
	MessageIDDomain string
	// Timeout bounds one submission; default 10s.
	Timeout time.Duration
	// MaxIdle is how many authenticated connections are kept for reuse;
	// default 4.
	MaxIdle int
	Now     func() time.Time
}

// SMTP submits email. Connections are reused: a message on an idle
// connection that turns out to be dead is re-submitted on a fresh one only
// when nothing was transmitted yet (the failure came before DATA).
type SMTP struct {
	cfg  SMTPConfig
	idle chan *smtp.Client
}

// NewSMTP returns the email sender.
func NewSMTP(cfg SMTPConfig) *SMTP {
	if cfg.HeloName == "" {
		cfg.HeloName = "localhost"
	}
	if cfg.MessageIDDomain == "" {
		cfg.MessageIDDomain = "herald.invalid"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SMTP{cfg: cfg, idle: make(chan *smtp.Client, cfg.MaxIdle)}
}

// Close closes the idle connections.
func (s *SMTP) Close() error {
	for {
		select {
		case c := <-s.idle:
			_ = c.Quit()
		default:
			return nil
		}
	}
}

func (s *SMTP) dial(ctx context.Context) (*smtp.Client, error) {
	d := net.Dialer{Timeout: s.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smtp: connect: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var c *smtp.Client
	if s.cfg.StartTLS {
		tc := s.cfg.TLS.Clone()
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if tc.ServerName == "" {
			host, _, _ := net.SplitHostPort(s.cfg.Addr)
			tc.ServerName = host
		}
		// NewClientStartTLS greets, says EHLO and upgrades the connection;
		// it fails when the server does not offer STARTTLS.
		if c, err = smtp.NewClientStartTLS(conn, tc); err != nil {
			_ = conn.Close()
			return nil, classifySMTP("starttls", err)
		}
	} else {
		c = smtp.NewClient(conn)
		if err := c.Hello(s.cfg.HeloName); err != nil {
			_ = c.Close()
			return nil, classifySMTP("ehlo", err)
		}
	}
	c.CommandTimeout = s.cfg.Timeout
	c.SubmissionTimeout = s.cfg.Timeout
	if s.cfg.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", s.cfg.Username, s.cfg.Password)); err != nil {
			_ = c.Close()
			return nil, classifySMTP("auth", err)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

func (s *SMTP) get(ctx context.Context) (c *smtp.Client, pooled bool, err error) {
	select {
	case c := <-s.idle:
		return c, true, nil
	default:
	}
	c, err = s.dial(ctx)
	return c, false, err
}

func (s *SMTP) put(c *smtp.Client) {
	select {
	case s.idle <- c:
	default:
		_ = c.Quit()
	}
}

// Send implements Sender. The provider id is the Message-ID header.
func (s *SMTP) Send(ctx context.Context, msg Message) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c, pooled, err := s.get(ctx)
	if err != nil {
		return "", ctxErr(ctx, err)
	}
	id, started, err := s.submit(ctx, c, msg)
	if err != nil && pooled && !started {
		// The idle connection may have been closed by the server; nothing
		// was transmitted, so submit once more on a fresh connection.
		_ = c.Close()
		if c, err = s.dial(ctx); err != nil {
			return "", ctxErr(ctx, err)
		}
		id, _, err = s.submit(ctx, c, msg)
	}
	if err != nil {
		_ = c.Close()
		return "", ctxErr(ctx, err)
	}
	s.put(c)
	return id, nil
}

// submit runs one MAIL/RCPT/DATA transaction. started reports whether the
// message content began to be transmitted.
func (s *SMTP) submit(ctx context.Context, c *smtp.Client, msg Message) (id string, started bool, err error) {
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if err := c.Mail(s.cfg.From, nil); err != nil {
		return "", false, classifySMTP("mail", err)
	}
	if err := c.Rcpt(msg.Address, nil); err != nil {
		_ = c.Reset()
		return "", true, classifySMTP("rcpt", err)
	}
	w, err := c.Data()
	if err != nil {
		return "", true, classifySMTP("data", err)
	}
	id = "<" + msg.ID + "@" + s.cfg.MessageIDDomain + ">"
	if _, err := w.Write(s.format(msg, id)); err != nil {
		_ = w.Close()
		return "", true, classifySMTP("data", err)
	}
	if _, err := w.CloseWithResponse(); err != nil {
		return "", true, classifySMTP("data", err)
	}
	return id, true, nil
}

func (s *SMTP) format(msg Message, id string) []byte {
	var b strings.Builder
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", s.cfg.From)
	hdr("To", msg.Address)
	hdr("Subject", mime.QEncoding.Encode("utf-8", msg.Subject))
	hdr("Date", s.cfg.Now().UTC().Format(time.RFC1123Z))
	hdr("Message-ID", id)
	hdr("X-Herald-Notification-Id", msg.ID)
	hdr("Auto-Submitted", "auto-generated")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	body := strings.ReplaceAll(strings.ReplaceAll(msg.Body, "\r\n", "\n"), "\n", "\r\n")
	b.WriteString(body)
	return []byte(b.String())
}

// classifySMTP keeps only the reply code of a server error (the text may
// echo the address) and marks 5xx permanent. Network errors are transient.
func classifySMTP(stage string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		e := fmt.Errorf("smtp %s: reply %d %d.%d.%d", stage, se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		if se.Code >= 500 {
			return Permanent(e)
		}
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("smtp %s: network: %w", stage, err)
	}
	return fmt.Errorf("smtp %s: %w", stage, err)
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
