package web

import (
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	"github.com/herald-health/herald/services/console/internal/oidcauth"
)

// TestWorklistPagesInAcknowledgementsDeadlineOrder (issue #21): the
// worklist asks acknowledgement for its deadline order
// (LIST_ORDER_DEADLINE_ASC) one page at a time, never the whole list to
// sort it itself, shows the alerts in that order, and its next and
// previous links follow the service's cursor without repeats or gaps.
func TestWorklistPagesInAcknowledgementsDeadlineOrder(t *testing.T) {
	sess := &oidcauth.Session{Subject: "dr-7", PersonID: "dr-7", Name: "Dr Seven", Roles: map[string][]string{"RX1": {"clinician"}}, CSRF: "x"}
	alerts := newBenchAlerts(3000, time.Now())
	srv, err := New(Config{}, benchSessions{sess}, alerts, nil, nil, clock.Real{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) string {
		t.Helper()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	rowRE := regexp.MustCompile(`data-alert="([^"]+)"`)
	rows := func(body string) []string {
		var ids []string
		for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
			ids = append(ids, m[1])
		}
		return ids
	}
	link := func(body, id string) string {
		m := regexp.MustCompile(`href="([^"]+)" id="` + id + `"`).FindStringSubmatch(body)
		if m == nil {
			return ""
		}
		return html.UnescapeString(m[1])
	}
	want := func(from int) []string {
		var ids []string
		for _, i := range alerts.byDeadline[from : from+worklistPageSize] {
			ids = append(ids, alerts.states[i].GetAlertId())
		}
		return ids
	}

	p1 := get("/worklist?view=team")
	if got := rows(p1); strings.Join(got, " ") != strings.Join(want(0), " ") {
		t.Fatalf("page 1 is not acknowledgement's deadline order:\n got %v\nwant %v", got, want(0))
	}
	for _, r := range alerts.lists {
		if r.GetOrder() != ackv1.ListOrder_LIST_ORDER_DEADLINE_ASC || r.GetPageSize() > worklistPageSize {
			t.Fatalf("the worklist asked for order %v, %d alerts: it must ask for a page in the deadline order", r.GetOrder(), r.GetPageSize())
		}
	}
	if n := len(alerts.lists); n != 1 {
		t.Errorf("one page took %d ListAlerts calls, want 1", n)
	}
	next := link(p1, "next-page")
	if next == "" || link(p1, "prev-page") != "" {
		t.Fatalf("page 1: next %q, previous %q", next, link(p1, "prev-page"))
	}
	p2 := get(next)
	if got := rows(p2); strings.Join(got, " ") != strings.Join(want(worklistPageSize), " ") {
		t.Fatalf("page 2 does not continue the order:\n got %v\nwant %v", got, want(worklistPageSize))
	}
	if !strings.Contains(p2, "(page 2)") {
		t.Error("page 2 does not say which page it is")
	}
	p3 := get(link(p2, "next-page"))
	if got := rows(p3); strings.Join(got, " ") != strings.Join(want(2*worklistPageSize), " ") {
		t.Fatalf("page 3 does not continue the order")
	}
	back := get(link(p3, "prev-page"))
	if strings.Join(rows(back), " ") != strings.Join(want(worklistPageSize), " ") {
		t.Fatal("page 3's previous link is not page 2")
	}
	if first := get(link(back, "prev-page")); strings.Join(rows(first), " ") != strings.Join(want(0), " ") {
		t.Fatal("page 2's previous link is not page 1")
	}
}
