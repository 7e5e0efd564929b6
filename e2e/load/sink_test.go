package load

import (
	"bytes"
	"github.com/herald-health/herald/platform/alertref"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// smtpSink is a real SMTP server (go-smtp) that records, per alert
// reference, when its first message was accepted. The notification
// service's email carries "Reference: XXXX-XXXX-XXXX" (the first 12
// characters of the alert id, upper case, in groups of four).
type smtpSink struct {
	addr string

	mu    sync.Mutex
	first map[string]time.Time
	mails int
	bad   int
	// ids counts the messages of each Message-ID (the notification id:
	// a second message with one id is a duplicate of the first).
	ids map[string]int
}

func newSMTPSink(b testing.TB) *smtpSink {
	b.Helper()
	s := &smtpSink{first: map[string]time.Time{}, ids: map[string]int{}}
	srv := smtp.NewServer(s)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxRecipients = 10
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatalf("listen for smtp sink: %v", err)
	}
	s.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return s
}

// firstAt returns when the first message for the alert reference arrived.
func (s *smtpSink) firstAt(ref string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.first[ref]
	return t, ok
}

// counts returns the messages accepted and the distinct references seen.
func (s *smtpSink) counts() (mails, refs, unparsed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mails, len(s.first), s.bad
}

func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{sink: s}, nil }

type session struct{ sink *smtpSink }

func (*session) Reset()                               {}
func (*session) Logout() error                        { return nil }
func (*session) Mail(string, *smtp.MailOptions) error { return nil }
func (*session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (x *session) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	at := time.Now()
	ref := reference(body)
	s := x.sink
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mails++
	if id := header(body, "Message-ID"); id != "" {
		s.ids[id]++
	}
	if ref == "" {
		s.bad++
		return nil
	}
	if _, ok := s.first[ref]; !ok {
		s.first[ref] = at
	}
	return nil
}

// duplicates returns how many messages repeated a Message-ID seen before.
func (s *smtpSink) duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.ids {
		n += c - 1
	}
	return n
}

// header returns the value of a header of a message (before the blank
// line that ends the headers).
func header(msg []byte, name string) string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(k), name) {
			return strings.TrimSpace(string(v))
		}
	}
	return ""
}

var refLabel = []byte("Reference: ")

// reference extracts the alert reference from a message body.
func reference(body []byte) string {
	i := bytes.Index(body, refLabel)
	if i < 0 {
		return ""
	}
	rest := body[i+len(refLabel):]
	if j := bytes.IndexAny(rest, "\r\n"); j >= 0 {
		rest = rest[:j]
	}
	return strings.TrimSpace(string(rest))
}

// referenceKey is the key of the alert references the services print
// (startSystem gives it to notification and acknowledgement).
var referenceKey = strings.Repeat("load-reference-key-", 3)

// refOf is the notification service's reference of an alert id: the keyed
// HRD- reference (platform/alertref) under referenceKey.
func refOf(alertID string) string {
	k, err := alertref.New([]byte(referenceKey))
	if err != nil {
		panic(err) // referenceKey is long enough
	}
	return k.Ref(alertID)
}
