package lifecycle_test

import (
	"testing"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

// The watchdog's TimerRepaired names the overdue deadline and the timers
// due, has one id per alert and deadline, and changes nothing in the state
// (the decision the deadline owes follows as its own event).
func TestRepairedNamesTheOverdueDeadlineAndChangesNoState(t *testing.T) {
	st := fold(raised(), routed())
	due, ok := lifecycle.NextDeadline(st)
	require.True(t, ok)
	require.Equal(t, t0.Add(time.Second+15*time.Minute), due, "the step timeout comes first")

	now := due.Add(5 * time.Minute)
	rep, ok := lifecycle.Repaired(st, now)
	require.True(t, ok)
	r := rep.GetTimerRepaired()
	require.Equal(t, due, r.GetDeadline().AsTime())
	require.Equal(t, 5*time.Minute, r.GetOverdueBy().AsDuration())
	require.Equal(t, []string{"step"}, r.GetTimers())
	again, _ := lifecycle.Repaired(st, now.Add(time.Minute))
	require.Equal(t, rep.GetEventId(), again.GetEventId(), "one event per alert and deadline")

	after, applied := lifecycle.Apply(st, rep, lifecycle.Position{Offset: 2})
	require.True(t, applied)
	require.Equal(t, "TimerRepaired", after.GetTimeline()[len(after.GetTimeline())-1].GetType())
	require.False(t, after.GetTimeline()[len(after.GetTimeline())-1].GetNoEffect())
	require.Equal(t, lifecycle.Timers(st), lifecycle.Timers(after))
	require.Equal(t, st.GetState(), after.GetState())
	require.True(t, proto.Equal(st.GetClocks(), after.GetClocks()))

	_, ok = lifecycle.NextDeadline(fold(raised(), routed(), ack("k", "a", 0), ev("x", time.Hour, &eventsv1.ActionRecorded{Action: "done"})))
	require.False(t, ok, "an actioned alert has no deadline")
}
