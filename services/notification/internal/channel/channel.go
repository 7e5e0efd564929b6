// Package channel holds the ways Herald reaches people: SMTP email, SMS
// through a GOV.UK Notify-shaped gateway, a Microsoft Teams incoming
// webhook, a generic HMAC-signed webhook, a log channel for development and
// an in-memory capture channel for tests and `make run`. All of them
// implement Sender.
package channel

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/content"
)

// Message is one message to one address.
type Message struct {
	// ID is the notification id: deterministic per (alert, step, repeat,
	// person, channel). Senders pass it to the provider as the idempotency
	// key or reference wherever the provider has one.
	ID      string
	Channel eventsv1.Channel
	// Address is the contact point (email, phone number, webhook URL). It
	// is contact data: a Sender never logs it or puts it in an error.
	Address string
	Subject string
	Body    string
	// Data is what the message was rendered from (ids, category, trust,
	// deadline, acknowledge link), for channels that send structured
	// payloads. It holds no patient data.
	Data content.Data
}

// Sender delivers messages over one channel.
//
// Send hands msg to the provider and returns the provider's message id once
// the provider has accepted it; accepted is "sent", not "delivered" (delivery
// is reported later through a receipt, where the provider has them). Send
// honours ctx: when ctx ends it returns ctx's error, and the message may or
// may not have reached the provider.
//
// Errors: an error for which IsPermanent is true means this address will not
// take this message whatever the retries (the provider rejected it: unknown
// mailbox, invalid number, 4xx other than 408/425/429); the caller moves on to
// the person's next contact point. Any other error is transient (network,
// timeout, 5xx, 429) and the caller may retry the same message with the same
// ID. Error texts never contain the address or the message content.
//
// Implementations are safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, msg Message) (providerID string, err error)
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, msg Message) (string, error)

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, msg Message) (string, error) { return f(ctx, msg) }

// permanentError marks an error as permanent.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: retrying the same address will not help.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err (or an error it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// httpStatusError classifies an HTTP response status: 2xx is success; 408,
// 425, 429 and 5xx are transient; any other status is permanent.
func httpStatusError(provider string, status int) error {
	if status >= 200 && status < 300 {
		return nil
	}
	err := fmt.Errorf("%s: http status %d", provider, status)
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusTooManyRequests, status >= 500:
		return err
	}
	return Permanent(err)
}
