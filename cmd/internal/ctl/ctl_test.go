package ctl

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func runCtl(args ...string) (code int, out, errOut string) {
	var o, e bytes.Buffer
	code = Main(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestHelpListsEveryCommand(t *testing.T) {
	code, out, _ := runCtl("help")
	if code != 0 {
		t.Fatalf("exit code: got %d, want 0", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out, c.name) {
			t.Errorf("help does not mention %s:\n%s", c.name, out)
		}
	}
	code, out, _ = runCtl("help", "decline")
	if code != 0 || !strings.Contains(out, "not-my-patient") {
		t.Fatalf("help decline: got %d %q, want the reasons listed", code, out)
	}
}

func TestUnknownCommandSaysWhatToDo(t *testing.T) {
	code, _, errOut := runCtl("acknowledge")
	if code != 2 || !strings.Contains(errOut, "heraldctl help") {
		t.Fatalf("got %d %q, want exit 2 pointing at help", code, errOut)
	}
}

// -as named the actor on the command line: it is refused before any call
// (the actor is the signed-in person).
func TestAckAsSomeoneIsRefusedBeforeAnyCall(t *testing.T) {
	code, _, errOut := runCtl("ack", "-addr", "127.0.0.1:1", "-as", "dr-x", "alert-1")
	if code != 1 || !strings.Contains(errOut, "-as is refused") {
		t.Fatalf("got %d %q, want a plain refusal naming -as", code, errOut)
	}
}

func TestBundleSubcommandsSayWhatTheyNeed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bundle"}, "say propose, pending, approve, reject or dry-run"},
		{[]string{"bundle", "approve", "-addr", "127.0.0.1:1", "RZY"}, "give the trust and the content hash"},
		{[]string{"bundle", "pending", "-addr", "127.0.0.1:1"}, "give the trust"},
		{[]string{"bundle", "dry-run", "-addr", "127.0.0.1:1"}, "-tenant and -hash"},
		{[]string{"bundle", "withdraw", "-addr", "127.0.0.1:1"}, `unknown bundle subcommand "withdraw"`},
	} {
		code, _, errOut := runCtl(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: got %d %q, want exit 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestBadCategoryNamesTheFlag(t *testing.T) {
	code, _, errOut := runCtl("raise", "-category", "red")
	if code != 1 || !strings.Contains(errOut, `-category "red"`) {
		t.Fatalf("got %d %q", code, errOut)
	}
}

func TestUnreachableServiceIsExplained(t *testing.T) {
	code, _, errOut := runCtl("show", "-addr", "127.0.0.1:1", "alert-1")
	if code != 1 || !strings.Contains(errOut, "not reachable") {
		t.Fatalf("got %d %q, want an explanation that the service is not reachable", code, errOut)
	}
}

func TestSummaryCarriesNoPatientData(t *testing.T) {
	details := &eventsv1.AlertDetails{
		Source:       eventsv1.Source_SOURCE_HL7V2,
		Patient:      &eventsv1.Patient{NhsNumber: "9990000018", FamilyName: "SYNTHETIC", GivenName: "Alice", BirthDate: "1970-01-01"},
		ReportText:   "Large left pneumothorax",
		SourceFlag:   &eventsv1.SourceFlag{Category: eventsv1.Category_CATEGORY_CRITICAL},
		ReportStatus: eventsv1.ReportStatus_REPORT_STATUS_FINAL,
	}
	events := []*eventsv1.Event{
		{AlertId: "a1", Tenant: "RZZ", OccurredAt: timestamppb.Now(), Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: details}}},
		{AlertId: "a1", Tenant: "RZZ", OccurredAt: timestamppb.Now(), Payload: &eventsv1.Event_AlertAmended{AlertAmended: &eventsv1.AlertAmended{Details: details}}},
		{AlertId: "a1", Tenant: "RZZ", OccurredAt: timestamppb.Now(), Payload: &eventsv1.Event_AlertQuarantined{AlertQuarantined: &eventsv1.AlertQuarantined{Details: details,
			Problems: []*eventsv1.ValidationProblem{{Field: "PID-3", Problem: "NHS number fails the modulus 11 check"}}}}},
	}
	for _, ev := range events {
		line := Line(ev)
		for _, secret := range []string{"9990000018", "SYNTHETIC", "Alice", "1970-01-01", "pneumothorax"} {
			if strings.Contains(line, secret) {
				t.Fatalf("line %q contains patient data %q", line, secret)
			}
		}
		if !strings.Contains(line, "a1") {
			t.Fatalf("line %q lacks the alert id", line)
		}
	}
	if got := Summary(events[0]); got != "via hl7v2, flag critical, report final" {
		t.Fatalf("raised summary: got %q", got)
	}
}

func TestRebuildRemovesTheEpochKey(t *testing.T) {
	rdb := testinfra.NewRedis(t)
	ctx := context.Background()
	key, err := epochKey("acknowledgement", "")
	if err != nil || key != "{herald:ack}:epoch" {
		t.Fatalf("epoch key: got %q, %v", key, err)
	}
	if err := rdb.Set(ctx, key, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprint(rdb.Options().DB)
	code, out, errOut := runCtl("rebuild", "-redis", rdb.Options().Addr, "-redis-db", db, "acknowledgement")
	if code != 0 || !strings.Contains(out, "will rebuild") {
		t.Fatalf("got %d %q %q", code, out, errOut)
	}
	if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
		t.Fatal("epoch key still there")
	}
	if code, _, errOut := runCtl("rebuild", "-redis", rdb.Options().Addr, "rules"); code != 1 || !strings.Contains(errOut, "acknowledgement, notification or reporting") {
		t.Fatalf("unknown service: got %d %q", code, errOut)
	}
}

func TestSupersededSummarySaysWhoWasNotToldAndWhy(t *testing.T) {
	ev := &eventsv1.Event{AlertId: "a1", Tenant: "RZZ", OccurredAt: timestamppb.Now(), Payload: &eventsv1.Event_NotificationSuperseded{
		NotificationSuperseded: &eventsv1.NotificationSuperseded{Step: 1, Repeat: 0, Recipient: &eventsv1.Recipient{PersonId: "p-7"},
			Reason: "alert no longer open", ReasonCode: eventsv1.SupersededReason_SUPERSEDED_REASON_ALERT_CLOSED}}}
	if got, want := Summary(ev), "step 1/0 to p-7 not sent: alert no longer open"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
