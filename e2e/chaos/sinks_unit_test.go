//go:build chaos

package chaos

import "testing"

// The sinks honour the idempotency keys as real receivers do: a second
// message with a key the recipient already took is a resend in doubt the
// receiver drops (not a duplicate delivered to a person); the same key for
// another recipient, or a message without a key, is delivered.
func TestTheSinksDropAResendInDoubtOnItsKey(t *testing.T) {
	var b inbox
	b.add(message{ref: "HRD-A", slot: slotReferrer, key: "n1"})
	b.add(message{ref: "HRD-A", slot: slotReferrer, key: "n1"})
	b.add(message{ref: "HRD-A", slot: slotWard, key: "n1"})
	b.add(message{ref: "HRD-A", slot: slotReferrer})
	b.add(message{ref: "HRD-A", slot: slotReferrer})
	got := b.all()
	want := []bool{false, true, false, false, false}
	for i, m := range got {
		if m.redelivered != want[i] {
			t.Errorf("message %d: redelivered %v, want %v", i, m.redelivered, want[i])
		}
	}
}
