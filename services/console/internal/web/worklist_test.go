package web

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/services/console/internal/oidcauth"
)

// TestWorklistSaysWhenItSortedOnlyPartOfTheList: with more matching alerts
// than the worklist reads, the page says the order is partial (not a
// silently incomplete sort), and a list it read whole does not.
func TestWorklistSaysWhenItSortedOnlyPartOfTheList(t *testing.T) {
	sess := &oidcauth.Session{Subject: "dr-7", PersonID: "dr-7", Name: "Dr Seven", Roles: map[string][]string{"RX1": {"clinician"}}, CSRF: "x"}
	for _, tc := range []struct {
		alerts  int
		partial bool
	}{{worklistGatherMax + 1, true}, {worklistGatherMax, false}} {
		srv, err := New(Config{}, benchSessions{sess}, newBenchAlerts(tc.alerts, time.Now()), nil, nil, clock.Real{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/worklist?view=team", nil))
		body := rec.Body.String()
		if rec.Code != http.StatusOK {
			t.Fatalf("%d alerts: %d %s", tc.alerts, rec.Code, body)
		}
		if got := strings.Contains(body, `id="partial"`); got != tc.partial {
			t.Errorf("%d alerts: partial notice shown %v, want %v", tc.alerts, got, tc.partial)
		}
		if n := strings.Count(body, `<tr class="nhsuk-table__row" data-alert=`); n != worklistPageSize {
			t.Errorf("%d alerts: %d rows on page 1, want %d", tc.alerts, n, worklistPageSize)
		}
	}
}
