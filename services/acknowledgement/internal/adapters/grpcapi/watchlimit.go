package grpcapi

import (
	"context"
	"net"
	"sync"

	"google.golang.org/grpc/peer"

	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/identity"
)

// DefaultMaxWatchesPerCaller is how many WatchAlerts streams one caller may
// hold open at once by default: a console has one per open worklist, and a
// caller that opens streams without end would otherwise hold a goroutine,
// a Redis subscription share and a send buffer each (issue #19).
const DefaultMaxWatchesPerCaller = 8

// watchLimit counts the open WatchAlerts streams of each caller.
type watchLimit struct {
	mu   sync.Mutex
	max  int
	open map[string]int
}

// acquire takes a stream for caller; false when it holds max already.
func (l *watchLimit) acquire(caller string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[caller] >= l.max {
		return false
	}
	l.open[caller]++
	return true
}

func (l *watchLimit) release(caller string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[caller]--; l.open[caller] <= 0 {
		delete(l.open, caller)
	}
}

// callerKey names who is calling, for the per-caller limit: the person of
// a verified token (several people behind one console are several
// callers), else the service of the verified certificate (the identity
// authentication put in the context, else the mTLS peer's own), else, on a
// plaintext development listener, the peer's address.
func callerKey(ctx context.Context) string {
	if c, ok := identity.FromContext(ctx); ok {
		switch {
		case c.Person != nil:
			return "person:" + c.Person.Issuer + "|" + c.Person.Subject
		case c.Service != "":
			return "service:" + c.Service
		}
	}
	if id, ok := grpcserver.PeerIdentity(ctx); ok {
		return "service:" + id
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		host, _, err := net.SplitHostPort(p.Addr.String())
		if err != nil {
			host = p.Addr.String()
		}
		return "address:" + host
	}
	return "unknown"
}
