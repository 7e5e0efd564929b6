// Package freeport finds a TCP port that a process about to start (Hydra,
// PostgreSQL) or a listener whose address must be known in advance (the
// acknowledge page's links) can bind a moment later.
//
// Asking the kernel for port 0 and closing the listener is not enough: the
// port it returns comes from the ephemeral range, which the kernel also
// hands to outgoing connections, so any connection opened between the close
// and the bind (a Kafka or Redis client of the same process) can take it
// ("bind: address already in use"). The ports returned here lie below the
// ephemeral range, where only a listener that names its port can land.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the smallest port handed out: above the registered services
// that a developer machine commonly runs.
const lowest = 10000

// fallbackEphemeralLow is Linux's default start of the ephemeral range,
// used when /proc does not say.
const fallbackEphemeralLow = 32768

// attempts bounds the search; a port below the ephemeral range is rarely
// taken, so a few tries are plenty.
const attempts = 64

// Addr returns host:port for a port on host that is free now and below the
// kernel's ephemeral range.
func Addr(host string) (string, error) {
	port, err := Port(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// Port returns a port on host that is free now and below the kernel's
// ephemeral range.
func Port(host string) (int, error) {
	high := ephemeralLow()
	if high <= lowest {
		return 0, fmt.Errorf("free port on %s: the ephemeral range starts at %d, leaving no port below it", host, high)
	}
	var last error
	for range attempts {
		port := lowest + rand.IntN(high-lowest)
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			last = err
			continue
		}
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("free port on %s: %w", host, err)
		}
		return port, nil
	}
	return 0, fmt.Errorf("free port on %s: %d ports in [%d, %d) tried: %w", host, attempts, lowest, high, last)
}

// ephemeralLow reads the start of the kernel's ephemeral port range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallbackEphemeralLow
	}
	low, err := strconv.Atoi(strings.Fields(string(b) + " x")[0])
	if err != nil || low <= 0 {
		return fallbackEphemeralLow
	}
	return low
}
