package harness

import (
	"bufio"
	"fmt"
	"net"
	"time"
)

// SendMLLP sends one HL7 message in an MLLP frame and returns the framed
// reply (the ACK) without its frame bytes.
func SendMLLP(addr, msg string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
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
