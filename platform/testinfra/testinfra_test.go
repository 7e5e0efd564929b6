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

// Two systems started side by side each take many ports before binding
// them: FreePort must never give the same one twice (2,000 draws from the
// range below the ephemeral ports would repeat one almost surely).
func TestFreePortNeverHandsOutAPortTwice(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		addr := FreePort(t)
		if seen[addr] {
			t.Fatalf("FreePort gave %s twice", addr)
		}
		seen[addr] = true
	}
}
