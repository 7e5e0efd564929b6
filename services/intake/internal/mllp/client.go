package mllp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// Client sends messages over one MLLP connection and waits for each ACK.
// It is not safe for concurrent use.
type Client struct {
	conn    net.Conn
	r       *Reader
	timeout time.Duration
}

// Dial connects to addr (TLS if tlsCfg is set). timeout bounds each
// exchange.
func Dial(ctx context.Context, addr string, tlsCfg *tls.Config, timeout time.Duration) (*Client, error) {
	d := net.Dialer{Timeout: timeout}
	var conn net.Conn
	var err error
	if tlsCfg != nil {
		td := tls.Dialer{NetDialer: &d, Config: tlsCfg}
		conn, err = td.DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial mllp %s: %w", addr, err)
	}
	return &Client{conn: conn, r: NewReader(conn, 1<<20), timeout: timeout}, nil
}

// Send writes msg as a frame and returns the ACK frame.
func (c *Client) Send(msg []byte) ([]byte, error) {
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	if err := WriteFrame(c.conn, msg); err != nil {
		return nil, fmt.Errorf("send mllp frame: %w", err)
	}
	ack, err := c.r.ReadFrame()
	if err != nil {
		return nil, fmt.Errorf("read mllp ACK: %w", err)
	}
	return append([]byte(nil), ack...), nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
