package eventtype_test

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-health/herald/platform/eventtype"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// The table names every case of the payload oneof, once, as Of names an
// event that carries it: a payload added to the proto without a name here
// fails this test.
func TestTheTableNamesEveryPayloadAsOfDoes(t *testing.T) {
	fields := (&eventsv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload").Fields()
	var got []string
	for i := range fields.Len() {
		fd := fields.Get(i)
		ev := &eventsv1.Event{}
		m := ev.ProtoReflect()
		m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
		name := eventtype.Of(ev)
		if !slices.Contains(eventtype.All, name) {
			t.Errorf("payload %s is named %q by Of, which the table does not hold", fd.Name(), name)
		}
		got = append(got, name)
	}
	if len(got) != len(eventtype.All) {
		t.Errorf("the proto has %d payloads %v; the table has %d %v", len(got), got, len(eventtype.All), eventtype.All)
	}
	if eventtype.SLABreached != "SLABreached" || eventtype.AlertRaised != "AlertRaised" {
		t.Errorf("names are the payload message names: got %q and %q", eventtype.SLABreached, eventtype.AlertRaised)
	}
}

func TestAnEventWithoutPayloadHasNoName(t *testing.T) {
	if got := eventtype.Of(&eventsv1.Event{EventId: "e1"}); got != "" {
		t.Fatalf("Of(no payload) = %q, want \"\"", got)
	}
}

func TestDetailsAreThoseOfTheReportEventsOnly(t *testing.T) {
	d := &eventsv1.AlertDetails{Accession: "ACC1"}
	for _, ev := range []*eventsv1.Event{
		{Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: d}}},
		{Payload: &eventsv1.Event_AlertAmended{AlertAmended: &eventsv1.AlertAmended{Details: d}}},
		{Payload: &eventsv1.Event_AlertQuarantined{AlertQuarantined: &eventsv1.AlertQuarantined{Details: d}}},
	} {
		if got := eventtype.Details(ev); got != d {
			t.Errorf("Details(%s) = %v, want the event's details", eventtype.Of(ev), got)
		}
	}
	if got := eventtype.Details(&eventsv1.Event{Payload: &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{}}}); got != nil {
		t.Errorf("Details(AlertRouted) = %v, want nil", got)
	}
}
