package eventlog

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/herald-health/herald/platform/eventtype"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// ID returns a deterministic identifier of its parts: the first 128 bits of
// SHA-256 over the parts separated by a unit separator, in hex. The same
// cause always yields the same id, so a repeated event is recognisable.
func ID(parts ...string) string {
	h := sha256.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0x1f})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// TypeOf returns the payload's name, e.g. "AlertRaised", or "" when the
// event has no payload (the one table is platform/eventtype).
func TypeOf(e *eventsv1.Event) string { return eventtype.Of(e) }
