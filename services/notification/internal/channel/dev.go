package channel

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Log is the development channel: it logs that a message would have gone
// out, with ids only (notification, alert, tenant, channel, step) and never
// the address, the text or the acknowledge link (a bearer token).
type Log struct{ logger *slog.Logger }

// NewLog returns the log sender.
func NewLog(logger *slog.Logger) *Log { return &Log{logger: logger} }

// Send implements Sender; it never fails.
func (l *Log) Send(ctx context.Context, msg Message) (string, error) {
	l.logger.InfoContext(ctx, "notification sent on log channel",
		slog.String("notification_id", msg.ID), slog.String("alert_id", msg.Data.AlertID),
		slog.String("tenant", msg.Data.Trust), slog.String("channel", msg.Channel.String()),
		slog.Uint64("step", uint64(msg.Data.Step)), slog.Uint64("repeat", uint64(msg.Data.Repeat)))
	return msg.ID, nil
}

// Capture keeps every message in memory (for tests and for viewing what
// `make run` would have sent). It holds addresses and text: never use it in
// production. It can wrap another Sender (nil for none): the message is
// captured, then passed on.
type Capture struct {
	next Sender
	mu   sync.Mutex
	msgs []Message
	subs []chan Message
}

// NewCapture returns a capture channel passing on to next (may be nil).
func NewCapture(next Sender) *Capture { return &Capture{next: next} }

// Send implements Sender.
func (c *Capture) Send(ctx context.Context, msg Message) (string, error) {
	id := msg.ID
	if c.next != nil {
		var err error
		if id, err = c.next.Send(ctx, msg); err != nil {
			return "", err
		}
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, msg)
	subs := slices.Clone(c.subs)
	c.mu.Unlock()
	for _, s := range subs {
		select {
		case s <- msg:
		default:
		}
	}
	return id, nil
}

// Messages returns the captured messages, oldest first.
func (c *Capture) Messages() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// ByChannel returns the captured messages of one channel.
func (c *Capture) ByChannel(ch eventsv1.Channel) []Message {
	var out []Message
	for _, m := range c.Messages() {
		if m.Channel == ch {
			out = append(out, m)
		}
	}
	return out
}

// Subscribe returns a channel that receives each message captured from now
// on (dropped if the buffer of n is full).
func (c *Capture) Subscribe(n int) <-chan Message {
	ch := make(chan Message, n)
	c.mu.Lock()
	c.subs = append(c.subs, ch)
	c.mu.Unlock()
	return ch
}
