package domain

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

var t0 = time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)

func raised(id string) *eventsv1.Event {
	return &eventsv1.Event{EventId: id, AlertId: "A1", Tenant: "RZZ", Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{
		Details: &eventsv1.AlertDetails{
			Patient:  &eventsv1.Patient{NhsNumber: "9990000018", FamilyName: "Testpatient"},
			Referrer: &eventsv1.Clinician{Id: "G123", IdSystem: "gmc", DisplayName: "Dr Who", Team: "T1"},
		},
	}}}
}

func routed(id string, mode eventsv1.AckMode) *eventsv1.Event {
	return &eventsv1.Event{EventId: id, AlertId: "A1", Tenant: "RZZ", Payload: &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{
		Category: eventsv1.Category_CATEGORY_CRITICAL,
		Clocks:   &eventsv1.Clocks{AcknowledgeBy: timestamppb.New(t0.Add(time.Hour))},
		Policy: &eventsv1.EscalationPolicy{FailsafeQueue: "fsq", Steps: []*eventsv1.EscalationStep{
			{Index: 0, AckMode: mode, Targets: []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_REFERRER}}, Channels: []eventsv1.Channel{eventsv1.Channel_CHANNEL_EMAIL}},
			{Index: 1, Targets: []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_ONCALL_ROLE, Ref: "oncall"}}},
		}},
	}}}
}

func escalated(id string, to, repeat uint32) *eventsv1.Event {
	return &eventsv1.Event{EventId: id, AlertId: "A1", Payload: &eventsv1.Event_AlertEscalated{AlertEscalated: &eventsv1.AlertEscalated{ToStep: to, Repeat: repeat}}}
}

func acked(id, person string) *eventsv1.Event {
	return &eventsv1.Event{EventId: id, AlertId: "A1", Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{Actor: &eventsv1.Actor{PersonId: person}}}}
}

func declined(id, person string) *eventsv1.Event {
	return &eventsv1.Event{EventId: id, AlertId: "A1", Payload: &eventsv1.Event_AlertDeclined{AlertDeclined: &eventsv1.AlertDeclined{Actor: &eventsv1.Actor{PersonId: person}}}}
}

func failsafe(id string) *eventsv1.Event {
	return &eventsv1.Event{EventId: id, AlertId: "A1", Payload: &eventsv1.Event_FailsafeQueued{FailsafeQueued: &eventsv1.FailsafeQueued{Queue: "fsq2", LastStep: 1}}}
}

func fold(events ...*eventsv1.Event) (Alert, []*Send) {
	var a Alert
	var sends []*Send
	for _, ev := range events {
		var s *Send
		a, s = Apply(a, ev)
		sends = append(sends, s)
	}
	return a, sends
}

func TestApply(t *testing.T) {
	tests := []struct {
		name       string
		given      []*eventsv1.Event
		when       *eventsv1.Event
		wantSend   *Send
		wantStatus Status
		wantStep   uint32
		wantRepeat uint32
	}{
		{"given raised when routed then send step 0", []*eventsv1.Event{raised("e1")}, routed("e2", 0), &Send{Round: 1}, StatusOpen, 0, 0},
		{"given routed when escalated then send to_step and repeat", []*eventsv1.Event{raised("e1"), routed("e2", 0)}, escalated("e3", 1, 0), &Send{Round: 1, Step: 1}, StatusOpen, 1, 0},
		{"given routed when repeat then send same step, next repeat", []*eventsv1.Event{routed("e2", 0)}, escalated("e3", 0, 1), &Send{Round: 1, Step: 0, Repeat: 1}, StatusOpen, 0, 1},
		{"given routed when duplicate routed then nothing", []*eventsv1.Event{routed("e2", 0)}, routed("e2", 0), nil, StatusOpen, 0, 0},
		{"given acknowledged when escalated then nothing", []*eventsv1.Event{routed("e2", 0), acked("e3", "p1")}, escalated("e4", 1, 0), nil, StatusAcknowledged, 0, 0},
		{"given routed when failsafe then send the failsafe step", []*eventsv1.Event{routed("e2", 0), escalated("e3", 1, 0)}, failsafe("e4"), &Send{Round: 1, Step: 2, Failsafe: true}, StatusFailsafe, 1, 0},
		{"given failsafe queued when acknowledged then still queued until closed", []*eventsv1.Event{routed("e2", 0), failsafe("e3")}, acked("e4", "p1"), nil, StatusFailsafe, 0, 0},
		{"given failsafe queued all-must when one acks then still queued until closed", []*eventsv1.Event{routed("e2", eventsv1.AckMode_ACK_MODE_ALL_MUST), failsafe("e3")}, acked("e4", "p1"), nil, StatusFailsafe, 0, 0},
		{"given routed all-must when one acks then still open", []*eventsv1.Event{routed("e2", eventsv1.AckMode_ACK_MODE_ALL_MUST)}, acked("e3", "p1"), nil, StatusOpen, 0, 0},
		{"given routed when cancelled then cancelled", []*eventsv1.Event{routed("e2", 0)},
			&eventsv1.Event{EventId: "e3", Payload: &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{}}}, nil, StatusCancelled, 0, 0},
		{"given routed when closed then closed", []*eventsv1.Event{routed("e2", 0), failsafe("e3")},
			&eventsv1.Event{EventId: "e4", Payload: &eventsv1.Event_AlertClosed{AlertClosed: &eventsv1.AlertClosed{}}}, nil, StatusClosed, 0, 0},
		{"given cancelled when raised again and routed then step 0 of a new round", []*eventsv1.Event{raised("e1"), routed("e2", 0), escalated("e3", 1, 0),
			{EventId: "e4", Payload: &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{}}}, raised("e5")},
			routed("e6", 0), &Send{Round: 2}, StatusOpen, 0, 0},
		{"given closed when raised again then open", []*eventsv1.Event{routed("e2", 0), failsafe("e3"),
			{EventId: "e4", Payload: &eventsv1.Event_AlertClosed{AlertClosed: &eventsv1.AlertClosed{}}}},
			raised("e5"), nil, StatusOpen, 0, 0},
		{"given acknowledged when raised again then still acknowledged", []*eventsv1.Event{routed("e2", 0), acked("e3", "p1")},
			raised("e5"), nil, StatusAcknowledged, 0, 0},
		{"given cancelled when routed without a new report then nothing", []*eventsv1.Event{raised("e1"), routed("e2", 0),
			{EventId: "e4", Payload: &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{}}}},
			routed("e6", 0), nil, StatusCancelled, 0, 0},
		{"given no event when unrelated event then applied, nothing sent", nil,
			&eventsv1.Event{EventId: "e1", AlertId: "A1", Payload: &eventsv1.Event_AlertRead{AlertRead: &eventsv1.AlertRead{}}}, nil, StatusOpen, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := fold(tt.given...)
			got, send := Apply(a, tt.when)
			require.Equal(t, tt.wantSend, send)
			require.Equal(t, tt.wantStatus, got.Status)
			require.Equal(t, tt.wantStep, got.Step)
			require.Equal(t, tt.wantRepeat, got.Repeat)
		})
	}
}

func TestApplyKeepsOnlyWhatItNeeds(t *testing.T) {
	a, _ := fold(raised("e1"), routed("e2", 0))
	require.Equal(t, Referrer{ID: "G123", System: "gmc", Team: "T1"}, a.Referrer)
	require.Equal(t, t0.Add(time.Hour), a.Deadline)
	require.Len(t, a.Steps, 2)
	require.Equal(t, "RZZ", a.Tenant)
	require.Equal(t, []string{"e1", "e2"}, a.Applied)
}

func TestApplyDoesNotMutateInput(t *testing.T) {
	a, _ := fold(routed("e2", 0))
	before := a.clone()
	_, _ = Apply(a, declined("e3", "p1"))
	require.Equal(t, before, a)
}

func TestGate(t *testing.T) {
	open, _ := fold(routed("e1", 0), escalated("e2", 1, 0), declined("e3", "p9"))
	ackd, _ := fold(routed("e1", 0), acked("e2", "p1"))
	fs, _ := fold(routed("e1", 0), failsafe("e2"))
	fsAckd, _ := fold(routed("e1", 0), failsafe("e2"), acked("e3", "p1"))
	rerouted, _ := fold(routed("e1", 0), escalated("e2", 1, 0), routed("e3", 0))
	repeated, _ := fold(routed("e1", 0), escalated("e2", 1, 0), escalated("e4", 1, 1))
	tests := []struct {
		name     string
		alert    Alert
		round    uint32
		step     uint32
		repeat   uint32
		failsafe bool
		person   string
		want     string
	}{
		{"given open at step 1 then step 1 may send", open, 0, 1, 0, false, "p1", GateOK},
		{"given open at step 1 then a step 0 message not yet made still goes", open, 0, 0, 0, false, "p1", GateOK},
		{"given open at step 1 repeat 1 then step 1 repeat 0 is superseded", repeated, 0, 1, 0, false, "p1", GateSuperseded},
		{"given a decliner then stopped", open, 0, 1, 0, false, "p9", GateStopped},
		{"given acknowledged then a retry is cancelled", ackd, 0, 0, 0, false, "p1", GateClosed},
		{"given failsafe queued then the failsafe message goes", fs, 0, 2, 0, true, "p1", GateOK},
		{"given failsafe queued then a step message not yet made still goes", fs, 0, 0, 0, false, "p1", GateOK},
		{"given acknowledged in the fail-safe queue then the officers are still told (until closed)", fsAckd, 0, 2, 0, true, "p1", GateOK},
		{"given acknowledged in the fail-safe queue then a step message not yet made still goes", fsAckd, 0, 0, 0, false, "p1", GateOK},
		{"given open then a failsafe send is closed", open, 0, 2, 0, true, "p1", GateClosed},
		{"given not routed then nothing", Alert{}, 0, 0, 0, false, "p1", GateNotRouted},
		{"given re-routed then a job of the first round is superseded", rerouted, 1, 0, 0, false, "p1", GateSuperseded},
		{"given re-routed then step 0 of the new round may send", rerouted, 2, 0, 0, false, "p1", GateOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			round := tt.round
			if round == 0 {
				round = 1
			}
			require.Equal(t, tt.want, tt.alert.Gate(round, tt.step, tt.repeat, tt.failsafe, tt.person))
		})
	}
	st, ok := fs.StepAt(2)
	require.True(t, ok)
	require.Equal(t, []Target{{Kind: eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER, Ref: "fsq2", Tenant: "RZZ"}}, st.Targets)
}
