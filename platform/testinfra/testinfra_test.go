package testinfra

import (
	"net"
	"strconv"
	"testing"
)

func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
	for range 20 {
		addr := FreePort(t)
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		if p >= ephemeralLow() {
			t.Fatalf("port %d is in the ephemeral range (from %d)", p, ephemeralLow())
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("FreePort gave %s, which cannot be bound: %v", addr, err)
		}
		_ = l.Close()
	}
}
