package app

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLinkExpiryFollowsTheAcknowledgeByClock: a link lives until the
// alert's acknowledge-by deadline, bounded below (a reminder sent after the
// deadline still works for the minimum) and above (never past the cap).
func TestLinkExpiryFollowsTheAcknowledgeByClock(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	const minTTL, maxTTL = time.Hour, 72 * time.Hour
	for _, tc := range []struct {
		name     string
		deadline time.Time
		want     time.Time
	}{
		{"critical, acknowledge within 4 h", now.Add(4 * time.Hour), now.Add(4 * time.Hour)},
		{"deadline sooner than the minimum", now.Add(10 * time.Minute), now.Add(minTTL)},
		{"overdue: sent after the deadline", now.Add(-2 * time.Hour), now.Add(minTTL)},
		{"deadline beyond the cap", now.Add(30 * 24 * time.Hour), now.Add(maxTTL)},
		{"category without a clock", time.Time{}, now.Add(maxTTL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, LinkExpiry(now, tc.deadline, minTTL, maxTTL))
		})
	}
}
