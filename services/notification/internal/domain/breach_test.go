package domain

import (
	"testing"

	"github.com/stretchr/testify/require"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func breached(id string, clock eventsv1.ClockKind) *eventsv1.Event {
	return &eventsv1.Event{EventId: id, AlertId: "A1", Payload: &eventsv1.Event_SlaBreached{SlaBreached: &eventsv1.SLABreached{Clock: clock}}}
}

// SLABreached sends the notice of the clocks the policy names people for,
// while the alert is not cancelled or closed (an acknowledged alert's action
// clock still tells); a clock nobody is named for sends nothing.
func TestABreachSendsTheNoticeThePolicyNames(t *testing.T) {
	r := routed("r", eventsv1.AckMode_ACK_MODE_ANY_ONE)
	r.GetAlertRouted().GetPolicy().BreachNotices = []*eventsv1.BreachNotice{
		{Clock: eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE, Targets: []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_PERSON, Ref: "lead"}},
			Channels: []eventsv1.Channel{eventsv1.Channel_CHANNEL_SMS}},
		{Clock: eventsv1.ClockKind_CLOCK_KIND_ACTION, Targets: []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER}}},
	}
	a, _ := Apply(Alert{}, r)
	tests := []struct {
		name  string
		after []*eventsv1.Event
		clock eventsv1.ClockKind
		want  bool
	}{
		{"open, named clock", nil, eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE, true},
		{"open, clock nobody is named for", nil, eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE, false},
		{"acknowledged, action clock", []*eventsv1.Event{acked("k", "p")}, eventsv1.ClockKind_CLOCK_KIND_ACTION, true},
		{"cancelled", []*eventsv1.Event{{EventId: "c", AlertId: "A1", Payload: &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{}}}},
			eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE, false},
		{"closed", []*eventsv1.Event{{EventId: "x", AlertId: "A1", Payload: &eventsv1.Event_AlertClosed{AlertClosed: &eventsv1.AlertClosed{}}}},
			eventsv1.ClockKind_CLOCK_KIND_ACTION, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := a
			for _, ev := range tt.after {
				x, _ = Apply(x, ev)
			}
			_, send := Apply(x, breached("b", tt.clock))
			if !tt.want {
				require.Nil(t, send)
				return
			}
			require.NotNil(t, send)
			require.Equal(t, tt.clock, send.Breach)
			require.Equal(t, x.Round, send.Round)
			step, ok := x.BreachStep(tt.clock)
			require.True(t, ok)
			require.NotEmpty(t, step.Targets)
			require.Equal(t, GateOK, x.GateBreach(send.Round))
		})
	}
	step, _ := a.BreachStep(eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE)
	require.Equal(t, []eventsv1.Channel{eventsv1.Channel_CHANNEL_SMS}, step.Channels)
	require.Equal(t, "lead", step.Targets[0].Ref)
	// A re-routing supersedes the notice of the earlier round.
	r2 := routed("r2", eventsv1.AckMode_ACK_MODE_ANY_ONE)
	b, _ := Apply(a, r2)
	require.Equal(t, GateSuperseded, b.GateBreach(a.Round))
	_, ok := b.BreachStep(eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE)
	require.False(t, ok, "the new routing's policy names nobody")
}
