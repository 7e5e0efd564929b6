package harness

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/herald-health/herald/platform/mtls"
)

// SendMLLP sends one HL7 message in an MLLP frame and returns the framed
// reply (the ACK) without its frame bytes.
func SendMLLP(addr, msg string) (string, error) {
	return SendMLLPTLS(addr, msg, nil)
}

// SendMLLPTLS is SendMLLP over mutual TLS with id (nil: plain TCP).
func SendMLLPTLS(addr, msg string, id *mtls.Source) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	dial := d.DialContext
	if id != nil {
		dial = id.Dialer(dial, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("connect to MLLP %s: %w", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte("\x0b" + msg + "\x1c\r")); err != nil {
		return "", fmt.Errorf("send to %s: %w", addr, err)
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes(0x0b); err != nil {
		return "", fmt.Errorf("read ACK from %s: %w", addr, err)
	}
	body, err := r.ReadBytes(0x1c)
	if err != nil {
		return "", fmt.Errorf("read ACK from %s: %w", addr, err)
	}
	return string(body[:len(body)-1]), nil
}
