package channel

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// post sends a JSON body and returns the response body of a 2xx. The URL is
// never part of an error (it may be a contact point).
func post(ctx context.Context, client *http.Client, provider, rawURL string, headers http.Header, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return nil, Permanent(fmt.Errorf("%s: invalid address", provider))
	}
	for k, v := range headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // drop the URL
		}
		return nil, fmt.Errorf("%s: request: %w", provider, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err := httpStatusError(provider, resp.StatusCode); err != nil {
		return nil, err
	}
	return b, nil
}

// NewHTTPClient returns the client the HTTP channels use by default: a
// bounded timeout and enough idle connections per host that concurrent
// sends reuse connections instead of dialling (and handshaking) anew.
func NewHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Timeout: timeout, Transport: t}
}

// NotifyConfig configures the SMS gateway (GOV.UK Notify's REST shape).
type NotifyConfig struct {
	// BaseURL, e.g. https://api.notifications.service.gov.uk.
	BaseURL string
	// APIKey is sent as a bearer token.
	APIKey string
	// TemplateID is the gateway's template; the rendered text goes in the
	// personalisation field "body".
	TemplateID string
	Client     *http.Client
}

// Notify sends SMS through POST {BaseURL}/v2/notifications/sms with the
// notification id as reference.
type Notify struct{ cfg NotifyConfig }

// NewNotify returns the SMS sender.
func NewNotify(cfg NotifyConfig) *Notify {
	if cfg.Client == nil {
		cfg.Client = NewHTTPClient(10 * time.Second)
	}
	return &Notify{cfg: cfg}
}

// Send implements Sender.
func (n *Notify) Send(ctx context.Context, msg Message) (string, error) {
	body, err := json.Marshal(map[string]any{
		"phone_number":    msg.Address,
		"template_id":     n.cfg.TemplateID,
		"personalisation": map[string]string{"body": msg.Body},
		"reference":       msg.ID,
	})
	if err != nil {
		return "", Permanent(fmt.Errorf("notify: encode: %w", err))
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+n.cfg.APIKey)
	resp, err := post(ctx, n.cfg.Client, "notify", strings.TrimRight(n.cfg.BaseURL, "/")+"/v2/notifications/sms", h, body)
	if err != nil {
		return "", err
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(resp, &out); err != nil || out.ID == "" {
		// Accepted (2xx) but unreadable: the gateway has the message, so this
		// is not an error; the reference is the notification id.
		return msg.ID, nil
	}
	return out.ID, nil
}

// Teams posts a MessageCard to a Microsoft Teams incoming webhook; the
// webhook URL is the contact point's address.
type Teams struct{ client *http.Client }

// NewTeams returns the Teams sender.
func NewTeams(client *http.Client) *Teams {
	if client == nil {
		client = NewHTTPClient(10 * time.Second)
	}
	return &Teams{client: client}
}

// Send implements Sender. Teams has no provider message id; the
// notification id is returned. The notification id goes in the
// Idempotency-Key header as on the generic webhook (a relay in front of
// Teams can drop a resend in doubt); Teams itself does not honour it.
func (t *Teams) Send(ctx context.Context, msg Message) (string, error) {
	body, err := json.Marshal(map[string]any{
		"@type":    "MessageCard",
		"@context": "https://schema.org/extensions",
		"summary":  msg.Subject,
		"title":    msg.Subject,
		"text":     msg.Body,
	})
	if err != nil {
		return "", Permanent(fmt.Errorf("teams: encode: %w", err))
	}
	h := http.Header{}
	h.Set(HeaderIdempotencyKey, msg.ID)
	if _, err := post(ctx, t.client, "teams", msg.Address, h, body); err != nil {
		return "", err
	}
	return msg.ID, nil
}

// Webhook header names.
const (
	HeaderSignature      = "X-Herald-Signature"
	HeaderTimestamp      = "X-Herald-Timestamp"
	HeaderIdempotencyKey = "Idempotency-Key"
)

// WebhookPayload is the JSON body of a generic webhook. It holds no patient
// data.
type WebhookPayload struct {
	NotificationID string    `json:"notification_id"`
	AlertID        string    `json:"alert_id"`
	AlertRef       string    `json:"alert_ref"`
	Tenant         string    `json:"tenant"`
	Category       string    `json:"category"`
	Deadline       time.Time `json:"deadline,omitzero"`
	AckURL         string    `json:"ack_url,omitempty"`
	Step           uint32    `json:"step"`
	Repeat         uint32    `json:"repeat"`
	Failsafe       bool      `json:"failsafe,omitempty"`
	Test           bool      `json:"test,omitempty"`
	Subject        string    `json:"subject,omitempty"`
	Text           string    `json:"text"`
}

// Webhook posts a WebhookPayload, signed with HMAC-SHA256, to the contact
// point's URL. The signature header is "sha256=" + hex(HMAC(secret,
// timestamp + "." + body)) with the timestamp (Unix seconds) in
// X-Herald-Timestamp; Idempotency-Key carries the notification id.
type Webhook struct {
	secret []byte
	client *http.Client
	now    func() time.Time
}

// NewWebhook returns the webhook sender.
func NewWebhook(secret []byte, client *http.Client, now func() time.Time) *Webhook {
	if client == nil {
		client = NewHTTPClient(10 * time.Second)
	}
	if now == nil {
		now = time.Now
	}
	return &Webhook{secret: secret, client: client, now: now}
}

// Sign returns the signature header value of body at timestamp ts.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a signature header value in constant time.
func VerifySignature(secret []byte, ts string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig))
}

// Send implements Sender. The receiver's 2xx is acceptance; the
// notification id is returned as provider id.
func (w *Webhook) Send(ctx context.Context, msg Message) (string, error) {
	d := msg.Data
	body, err := json.Marshal(WebhookPayload{
		NotificationID: msg.ID, AlertID: d.AlertID, AlertRef: d.Ref(), Tenant: d.Trust, Category: d.Category,
		Deadline: d.Deadline, AckURL: d.AckLink, Step: d.Step, Repeat: d.Repeat, Failsafe: d.Failsafe, Test: d.Test,
		Subject: msg.Subject, Text: msg.Body,
	})
	if err != nil {
		return "", Permanent(fmt.Errorf("webhook: encode: %w", err))
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	h := http.Header{}
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign(w.secret, ts, body))
	h.Set(HeaderIdempotencyKey, msg.ID)
	if _, err := post(ctx, w.client, "webhook", msg.Address, h, body); err != nil {
		return "", err
	}
	return msg.ID, nil
}
