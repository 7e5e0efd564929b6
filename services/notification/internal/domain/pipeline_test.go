package domain

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func TestDedup(t *testing.T) {
	tests := []struct {
		given Phase
		want  Decision
	}{
		{0, DecideSend},
		{PhasePending, DecideSend},
		{PhaseSending, DecideInDoubt},
		{PhaseSent, DecideRecord},
		{PhaseRecorded, DecideSkip},
		{PhaseDelivered, DecideSkip},
		{PhaseCancelled, DecideSkip},
		{PhaseFailed, DecideNextContact},
	}
	for _, tt := range tests {
		t.Run(tt.given.String(), func(t *testing.T) {
			require.Equal(t, tt.want, Dedup(tt.given))
		})
	}
}

func TestResendInDoubt(t *testing.T) {
	require.True(t, ResendInDoubt(0, 2), "a message in doubt is resent")
	require.True(t, ResendInDoubt(1, 2))
	require.False(t, ResendInDoubt(2, 2), "capped: a poison message must not loop")
	require.False(t, ResendInDoubt(0, 0), "a zero cap never resends")
}

func TestRateLimitDelay(t *testing.T) {
	now := time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	limit := RateLimit{Max: 2, Window: time.Minute}
	tests := []struct {
		name   string
		limit  RateLimit
		cat    eventsv1.Category
		recent []time.Time
		want   time.Duration
	}{
		{"given no history then no delay", limit, eventsv1.Category_CATEGORY_URGENT, nil, 0},
		{"given one send in window then no delay", limit, eventsv1.Category_CATEGORY_URGENT, []time.Time{ago(10 * time.Second)}, 0},
		{"given max sends in window then wait for the oldest to leave", limit, eventsv1.Category_CATEGORY_URGENT,
			[]time.Time{ago(10 * time.Second), ago(40 * time.Second)}, 20 * time.Second},
		{"given more than max then wait for enough to leave", limit, eventsv1.Category_CATEGORY_CANCER,
			[]time.Time{ago(5 * time.Second), ago(10 * time.Second), ago(40 * time.Second)}, 50 * time.Second},
		{"given sends outside the window then no delay", limit, eventsv1.Category_CATEGORY_URGENT,
			[]time.Time{ago(2 * time.Minute), ago(3 * time.Minute)}, 0},
		{"given CRITICAL then never delayed", limit, eventsv1.Category_CATEGORY_CRITICAL,
			[]time.Time{ago(1 * time.Second), ago(2 * time.Second), ago(3 * time.Second)}, 0},
		{"given limit disabled then no delay", RateLimit{}, eventsv1.Category_CATEGORY_URGENT,
			[]time.Time{ago(1 * time.Second), ago(2 * time.Second)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.limit.Delay(tt.cat, tt.recent, now))
		})
	}
}

func TestBackoff(t *testing.T) {
	now := time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)
	b := Backoff{Initial: time.Second, Max: 5 * time.Second, MaxAttempts: 4}
	tests := []struct {
		name      string
		attempt   uint32
		permanent bool
		want      Next
	}{
		{"given first retryable failure then retry after initial", 1, false, Next{Retry: true, At: now.Add(time.Second)}},
		{"given second failure then doubled", 2, false, Next{Retry: true, At: now.Add(2 * time.Second)}},
		{"given third failure then capped at max", 3, false, Next{Retry: true, At: now.Add(4 * time.Second)}},
		{"given attempts exhausted then next contact", 4, false, Next{}},
		{"given permanent failure then next contact", 1, true, Next{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, b.AfterFailure(tt.attempt, tt.permanent, now))
		})
	}
	require.Equal(t, 5*time.Second, b.Delay(10), "delay is bounded")
	require.Equal(t, 5*time.Second, b.Delay(200), "no overflow for large attempts")
}

func TestPlan(t *testing.T) {
	email := ContactPoint{Channel: eventsv1.Channel_CHANNEL_EMAIL, Address: "a@nhs.net"}
	email2 := ContactPoint{Channel: eventsv1.Channel_CHANNEL_EMAIL, Address: "b@nhs.net"}
	sms := ContactPoint{Channel: eventsv1.Channel_CHANNEL_SMS, Address: "+447700900000"}
	teams := ContactPoint{Channel: eventsv1.Channel_CHANNEL_TEAMS, Address: "https://teams.example/hook"}
	tests := []struct {
		name     string
		channels []eventsv1.Channel
		points   []ContactPoint
		want     []ContactPoint
	}{
		{"given no step channels then person's order", nil, []ContactPoint{sms, email, teams}, []ContactPoint{sms, email, teams}},
		{"given step channels then step order, filtered", []eventsv1.Channel{eventsv1.Channel_CHANNEL_EMAIL, eventsv1.Channel_CHANNEL_SMS},
			[]ContactPoint{teams, sms, email}, []ContactPoint{email, sms}},
		{"given two of a channel then the first only", nil, []ContactPoint{email, email2, sms}, []ContactPoint{email, sms}},
		{"given no address then dropped", nil, []ContactPoint{{Channel: eventsv1.Channel_CHANNEL_SMS}, email}, []ContactPoint{email}},
		{"given nothing matches then empty", []eventsv1.Channel{eventsv1.Channel_CHANNEL_WEBHOOK}, []ContactPoint{email}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Plan(tt.channels, tt.points))
		})
	}
}

func TestStepOutcome(t *testing.T) {
	require.False(t, StepOutcome(2, 1))
	require.True(t, StepOutcome(2, 2))
	require.False(t, StepOutcome(0, 0))
}
