package load

import (
	"fmt"
	"net/smtp"
	"strings"
	"testing"
)

// The benchmark fails when an alert is lost or duplicated, and only then:
// slow runs that lose nothing pass (their figures are the report's).
func TestVerdictFailsOnALostOrDuplicatedAlert(t *testing.T) {
	ok := func(id string) sample { return sample{id: id} }
	tests := []struct {
		name    string
		report  report
		wantErr string
	}{
		{"nothing lost or repeated", report{phases: []*phase{{name: "latency", samples: []sample{ok("a"), ok("b"), {err: fmt.Errorf("refused")}}, completed: 2}}}, ""},
		{"an alert lost", report{phases: []*phase{{name: "throughput", samples: []sample{ok("a"), ok("b")}, completed: 1}}}, "phase throughput: 1 of 2 accepted alerts lost"},
		{"a new report taken for another", report{phases: []*phase{{name: "timers", samples: []sample{ok("a"), {id: "a", dup: true}}, completed: 2}}}, "intake answered 1 new reports as duplicates"},
		{"a message sent twice", report{phases: []*phase{{name: "latency", samples: []sample{ok("a")}, completed: 1}}, duplicateMails: 1}, "1 messages sent twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.report.verdict()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("verdict: got %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("verdict: got %v, want an error containing %q", err, tt.wantErr)
			}
			if !strings.Contains(tt.report.markdown(), "**FAILED**") {
				t.Fatal("the report does not say the run failed")
			}
		})
	}
}

// The sink counts a second message with a Message-ID it has seen as a
// duplicate (sent over SMTP, as the notification service does).
func TestSinkCountsARepeatedMessageIDAsADuplicate(t *testing.T) {
	s := newSMTPSink(t)
	send := func(id string) {
		t.Helper()
		msg := "Message-ID: <" + id + "@herald.invalid>\r\nSubject: x\r\n\r\nReference: ABCD-EF01-2345\r\n"
		if err := smtp.SendMail(s.addr, nil, "herald@example.nhs.uk", []string{"dr@example.nhs.uk"}, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	send("n1")
	send("n2")
	if got := s.duplicates(); got != 0 {
		t.Fatalf("duplicates after two distinct messages: got %d, want 0", got)
	}
	send("n1")
	if got := s.duplicates(); got != 1 {
		t.Fatalf("duplicates after n1 twice: got %d, want 1", got)
	}
}
