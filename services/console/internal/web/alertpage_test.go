package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/clock"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	"github.com/herald-health/herald/services/console/internal/oidcauth"
)

// markReadAnswers is acknowledgement answering MarkRead with err.
type markReadAnswers struct {
	*benchAlerts
	err   error
	calls int
}

func (m *markReadAnswers) MarkRead(context.Context, *ackv1.MarkReadRequest, ...grpc.CallOption) (*ackv1.MarkReadResponse, error) {
	m.calls++
	return &ackv1.MarkReadResponse{}, m.err
}

// TestTheAlertPageDegradesPerPart (issue #21): a clinician opening an alert
// of their trust sent to a colleague (acknowledgement refuses the MarkRead
// that a recipient's view records) sees the alert, its patient details and
// its timeline, told why they cannot act on it, with no acknowledge or
// decline form; a MarkRead that fails otherwise is said and the page still
// shows, with the actions (the service decides them); a recipient sees no
// note.
func TestTheAlertPageDegradesPerPart(t *testing.T) {
	sess := &oidcauth.Session{Subject: "dr-7", PersonID: "dr-7", Name: "Dr Seven", Roles: map[string][]string{"RX1": {"clinician"}}, CSRF: "x"}
	for _, tc := range []struct {
		name     string
		err      error
		note     string
		canAct   bool
		noteShow bool
	}{
		{"a colleague's alert", status.Error(codes.PermissionDenied, "only a recipient"), "sent to a colleague, not to you", false, true},
		{"acknowledgement did not answer the read", status.Error(codes.Unavailable, "redis down"), "could not be recorded as read just now", true, true},
		{"the recipient's own alert", nil, "", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alerts := &markReadAnswers{benchAlerts: newBenchAlerts(3, time.Now()), err: tc.err}
			srv, err := New(Config{}, benchSessions{sess}, alerts, nil, nil, clock.Real{}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/alerts/alert-1", nil))
			body := rec.Body.String()
			if rec.Code != http.StatusOK {
				t.Fatalf("the page failed: %d %s", rec.Code, body)
			}
			if alerts.calls != 1 {
				t.Errorf("MarkRead called %d times, want 1", alerts.calls)
			}
			for _, want := range []string{`id="state"`, `id="timeline"`, `id="nhs-number"`} {
				if !strings.Contains(body, want) {
					t.Errorf("the page lacks %s", want)
				}
			}
			if got := strings.Contains(body, `id="read-note"`); got != tc.noteShow {
				t.Errorf("read note shown %v, want %v", got, tc.noteShow)
			}
			if tc.note != "" && !strings.Contains(body, tc.note) {
				t.Errorf("the page does not say %q", tc.note)
			}
			if got := strings.Contains(body, `id="acknowledge"`) || strings.Contains(body, `id="decline"`); got != tc.canAct {
				t.Errorf("acknowledge/decline offered %v, want %v", got, tc.canAct)
			}
		})
	}
}

// failsafeAlerts is acknowledgement listing two fail-safe alerts and
// refusing the timeline of one.
type failsafeAlerts struct {
	*benchAlerts
}

func (f failsafeAlerts) GetAlert(ctx context.Context, r *ackv1.GetAlertRequest, o ...grpc.CallOption) (*ackv1.GetAlertResponse, error) {
	if r.GetAlertId() == "alert-1" {
		return nil, status.Error(codes.Unavailable, "redis down")
	}
	return f.benchAlerts.GetAlert(ctx, r, o...)
}

// TestTheFailsafeQueueShowsARowWhoseHistoryCannotBeRead: one alert's
// timeline refused does not fail the fail-safe queue (issue #21, degrade
// per part): every row shows, the unread one says so.
func TestTheFailsafeQueueShowsARowWhoseHistoryCannotBeRead(t *testing.T) {
	sess := &oidcauth.Session{Subject: "fs-1", PersonID: "fs-1", Name: "Fiona", Roles: map[string][]string{"RX1": {"failsafe-officer"}}, CSRF: "x"}
	b := newBenchAlerts(2, time.Now())
	for _, st := range b.states {
		st.State = ackv1.State_STATE_FAILSAFE
	}
	srv, err := New(Config{}, benchSessions{sess}, failsafeAlerts{b}, nil, nil, clock.Real{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/failsafe?trust=RX1", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("the queue failed: %d %s", rec.Code, body)
	}
	if n := strings.Count(body, `data-alert=`); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
	if !strings.Contains(body, "could not be read just now") {
		t.Error("the unread row does not say so")
	}
}
