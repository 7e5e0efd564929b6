//go:build chaos

package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// message is one message a recipient got, as the sinks saw it: kept
// compact (no body) since a long run receives tens of thousands.
type message struct {
	ref  string // the alert's reference (HRD-XXXX-XXXX-XXXX)
	slot slot
	// began is when the send began at the sink: the SMTP MAIL command or
	// the webhook request's arrival. The send was decided before it.
	began time.Time
	link  string // the acknowledge link, if any
	// key is the message's idempotency key: the mail's Message-ID or the
	// webhook's Idempotency-Key (both carry the notification id). Two
	// messages of one pair with one key are one notification delivered
	// twice; with two keys, two notifications.
	key string
	// redelivered: the receiver already had a message with this key for
	// this recipient, and dropped this one as real receivers do (a mail
	// store on Message-ID, a webhook receiver on Idempotency-Key). It is
	// a resend in doubt deduplicated by the receiver, not a message to a
	// person.
	redelivered bool
}

// slot is a recipient of the chaos bundle's ladder; each belongs to one
// step, so (alert, slot) is (alert, step, recipient).
type slot int

const (
	slotUnknown   slot = iota
	slotReferrer       // step 1, email
	slotRegistrar      // step 2, email
	slotWard           // step 2, webhook
	slotFSO            // step 3, email
	slotQueue          // the fail-safe queue message to the fail-safe officer
)

var slotNames = map[slot]string{slotUnknown: "unknown", slotReferrer: "step 1 referrer (email)", slotRegistrar: "step 2 registrar (email)",
	slotWard: "step 2 ward system (webhook)", slotFSO: "step 3 fail-safe officer (email)", slotQueue: "fail-safe queue (email)"}

func (s slot) String() string { return slotNames[s] }

// step is the ladder's step index of the slot (-1 for the fail-safe queue).
func (s slot) step() int {
	switch s {
	case slotReferrer:
		return 0
	case slotRegistrar, slotWard:
		return 1
	case slotFSO:
		return 2
	}
	return -1
}

// slotsOf are the recipients of a step index.
var slotsOf = map[int][]slot{0: {slotReferrer}, 1: {slotRegistrar, slotWard}, 2: {slotFSO}}

var (
	refRE    = regexp.MustCompile(`\bHRD-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}\b`)
	refSubRE = regexp.MustCompile(`ref (HRD-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})\b`)
	linkRE   = regexp.MustCompile(`http://[^\s"<>]+/ack/[A-Za-z0-9_\-\.=]+`)
	msgIDRE  = regexp.MustCompile(`(?mi)^Message-ID:\s*<([^@>]+)`)
)

// inbox holds the messages of both sinks in arrival order. It honours the
// idempotency keys: a message whose key the recipient's mailbox or system
// has already taken is kept as redelivered (see message).
type inbox struct {
	mu   sync.Mutex
	msgs []message
	keys map[string]bool // key and slot of each message taken
}

func (b *inbox) add(m message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.key != "" {
		k := fmt.Sprintf("%s|%d", m.key, m.slot)
		if b.keys == nil {
			b.keys = map[string]bool{}
		}
		m.redelivered = b.keys[k]
		b.keys[k] = true
	}
	b.msgs = append(b.msgs, m)
}

// since returns the messages from index i on, and the next index.
func (b *inbox) since(i int) ([]message, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]message(nil), b.msgs[i:]...), len(b.msgs)
}

func (b *inbox) all() []message { m, _ := b.since(0); return m }

// smtpSink is a real SMTP server (go-smtp) feeding the inbox.
type smtpSink struct {
	addr string
	box  *inbox
}

func newSMTPSink(t testing.TB) *smtpSink {
	t.Helper()
	s := &smtpSink{box: &inbox{}}
	srv := smtp.NewServer(s)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{sink: s}, nil }

type session struct {
	sink  *smtpSink
	began time.Time
	to    []string
}

func (x *session) Reset()        { x.began, x.to = time.Time{}, nil }
func (x *session) Logout() error { return nil }
func (x *session) Mail(string, *smtp.MailOptions) error {
	x.began = time.Now()
	return nil
}
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}
func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	text := strings.ReplaceAll(string(b), "=\r\n", "")
	failsafeQueue := strings.Contains(text, "Fail-safe queue")
	for _, to := range x.to {
		sl := slotUnknown
		switch to {
		case "referrer@chaos.example.nhs.uk":
			sl = slotReferrer
		case "registrar@chaos.example.nhs.uk":
			sl = slotRegistrar
		case "failsafe@chaos.example.nhs.uk":
			sl = slotFSO
			if failsafeQueue {
				sl = slotQueue
			}
		}
		var key string
		if m := msgIDRE.FindStringSubmatch(text); m != nil {
			key = m[1]
		}
		x.sink.box.add(message{ref: mailRef(text), slot: sl, began: x.began, link: linkRE.FindString(text), key: key})
	}
	return nil
}

// mailRef finds the alert's reference in a mail: the subject's "ref X",
// else the first thing shaped like one.
func mailRef(text string) string {
	if m := refSubRE.FindStringSubmatch(text); m != nil {
		return m[1]
	}
	return refRE.FindString(text)
}

// webhookSink records the ward system's webhooks into the same inbox.
type webhookSink struct {
	url string
}

func newWebhookSink(t testing.TB, box *inbox) *webhookSink {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, r.Body)
		var p struct {
			AlertRef string `json:"alert_ref"`
			AckURL   string `json:"ack_url"`
		}
		_ = json.Unmarshal(buf.Bytes(), &p)
		box.add(message{ref: p.AlertRef, slot: slotWard, began: began, link: p.AckURL, key: r.Header.Get("Idempotency-Key")})
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"id":"ok"}`))
	}))
	t.Cleanup(srv.Close)
	return &webhookSink{url: srv.URL}
}
