package web

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/identity"
	"github.com/herald-health/herald/platform/sealing"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/console/internal/oidcauth"
	"google.golang.org/protobuf/proto"
)

// worklistPageSize is how many alerts one worklist page shows.
const worklistPageSize = 25

var openStates = []ackv1.State{ackv1.State_STATE_RAISED, ackv1.State_STATE_ROUTED, ackv1.State_STATE_NOTIFIED,
	ackv1.State_STATE_DELIVERED, ackv1.State_STATE_READ, ackv1.State_STATE_DECLINED, ackv1.State_STATE_ESCALATED,
	ackv1.State_STATE_ACKNOWLEDGED, ackv1.State_STATE_FAILSAFE}

// alertRow is one alert in a list, with what the person needs to triage it.
type alertRow struct {
	ID, Ref, Category, State string
	Deadline                 time.Time
	DeadlineLabel            string
	Overdue                  bool
	Raised                   time.Time
	Age                      time.Duration
	Step                     uint32
	Contacted                []string
	Tried                    int
	QueuedAt                 time.Time
	// Reminders is the fail-safe officers' messages after the first one
	// once queued (notification reminds them every failsafe_reminder_every
	// of the policy until the alert is closed); LastReminder the latest.
	Reminders    int
	LastReminder time.Time
	// NoTimeline: the alert's timeline could not be read (the row shows
	// what the list gave, and says so).
	NoTimeline bool
}

func (s *Server) row(st *ackv1.AlertState, now time.Time) alertRow {
	r := alertRow{ID: st.GetAlertId(), Ref: st.GetAccessionRef(), Category: categoryName(st.GetCategory()),
		State: stateName(st.GetState()), Step: st.GetStep(), Raised: st.GetRaisedAt().AsTime()}
	r.Deadline, r.DeadlineLabel = deadline(st)
	r.Overdue = !r.Deadline.IsZero() && !now.Before(r.Deadline) && !terminal(st.GetState())
	r.Age = now.Sub(r.Raised)
	seen := map[string]bool{}
	for _, e := range st.GetTimeline() {
		switch e.GetType() {
		case "NotificationSent", "NotificationFailed":
			r.Tried++
		case "FailsafeQueued":
			r.QueuedAt = e.GetAt().AsTime()
		}
		if e.GetType() == "NotificationSent" && !r.QueuedAt.IsZero() && failsafeReminder(st, e) {
			r.Reminders++
			r.LastReminder = e.GetAt().AsTime()
		}
		if p := e.GetPersonId(); p != "" && !seen[p] && strings.HasPrefix(e.GetType(), "Notification") {
			seen[p] = true
			r.Contacted = append(r.Contacted, p)
		}
	}
	for _, p := range st.GetStepRecipients() {
		if !seen[p] {
			seen[p] = true
			r.Contacted = append(r.Contacted, p)
		}
	}
	return r
}

// failsafeReminder reports whether a NotificationSent after the alert was
// queued is a reminder: a repeat (>= 1) of the fail-safe message, whose
// step is the number of the policy's steps, not its first send. Counted
// from the entry's fields (acknowledgement's timeline, issue #21), never
// from its summary's words.
func failsafeReminder(st *ackv1.AlertState, e *ackv1.TimelineEntry) bool {
	if !e.GetNotification() || e.GetRepeat() == 0 {
		return false
	}
	if steps := st.GetPolicy().GetSteps(); len(steps) > 0 && e.GetStep() != uint32(len(steps)) {
		return false // a repeat of an escalation step sent after queueing (a late send)
	}
	return true
}

// deadline is the next deadline the person must meet: acknowledge-by
// until acknowledged, then action-by; the escalation step's due time when
// no clock is set.
func deadline(st *ackv1.AlertState) (time.Time, string) {
	c := st.GetClocks()
	switch {
	case st.GetAcknowledgedAt() == nil && c.GetAcknowledgeBy() != nil:
		return c.GetAcknowledgeBy().AsTime(), "Acknowledge by"
	case st.GetActionedAt() == nil && c.GetActionBy() != nil:
		return c.GetActionBy().AsTime(), "Action by"
	case st.GetStepDueAt() != nil:
		return st.GetStepDueAt().AsTime(), "Next escalation"
	}
	return time.Time{}, ""
}

func terminal(s ackv1.State) bool {
	return s == ackv1.State_STATE_CLOSED || s == ackv1.State_STATE_CANCELLED || s == ackv1.State_STATE_ACTIONED
}

type worklistData struct {
	Trust, View, State string
	Trusts             []string
	Rows               []alertRow
	States             []string
	Next, Prev, First  string
	Paged              bool
	Page, PrevN, NextN int
}

// worklistMaxCalls bounds the ListAlerts calls of one worklist page: the
// page is filled in acknowledgement's deadline order
// (LIST_ORDER_DEADLINE_ASC), and a selective filter (such as "my alerts"
// among 100,000) may answer short pages, each after scanning at most
// 5,000 alerts of the order; the page then shows what it found and a next
// link that continues from there.
const worklistMaxCalls = 4

// worklistBackMax bounds the earlier pages' cursors a worklist link
// carries for its "Previous page" link.
const worklistBackMax = 20

// worklistPage reads one page of the worklist in acknowledgement's
// deadline order (overdue first, then by deadline, no deadline last),
// starting at req's page token: up to worklistPageSize alerts of trust,
// and the token of the next page ("" at the end).
func (s *Server) worklistPage(r *http.Request, sess *oidcauth.Session, req *ackv1.ListAlertsRequest, trust string) ([]*ackv1.AlertState, string, error) {
	req.Order = ackv1.ListOrder_LIST_ORDER_DEADLINE_ASC
	var out []*ackv1.AlertState
	for calls := 0; calls < worklistMaxCalls; calls++ {
		req.PageSize = int32(worklistPageSize - len(out))
		resp, err := s.alerts.ListAlerts(r.Context(), req, s.callOpts(sess)...)
		if err != nil {
			return nil, "", err
		}
		for _, st := range resp.GetAlerts() {
			if st.GetTenant() == trust { // never another trust's alert, whatever the service returned
				out = append(out, st)
			}
		}
		req.PageToken = resp.GetNextPageToken()
		if req.PageToken == "" || len(out) >= worklistPageSize {
			break
		}
	}
	return out, req.PageToken, nil
}

func (s *Server) worklist(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	p := sess.Person()
	trust, trusts, ok := trustParam(r, p, identity.RoleClinician, identity.RoleFailsafeOfficer)
	if !ok {
		s.forbidden(w, r, sess)
		return
	}
	q := r.URL.Query()
	view := q.Get("view")
	if view != "team" {
		view = "mine"
	}
	after := q.Get("after")
	req := &ackv1.ListAlertsRequest{Tenant: trust, PageToken: after}
	if view == "mine" {
		req.Assignee = sess.PersonID
	}
	stateName := q.Get("state")
	if st, ok := ackv1.State_value["STATE_"+strings.ToUpper(stateName)]; ok && stateName != "" {
		req.States = []ackv1.State{ackv1.State(st)}
	} else {
		stateName = ""
		req.States = openStates
	}
	alerts, next, err := s.worklistPage(r, sess, req, trust)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	now := s.clk.Now()
	d := worklistData{Trust: trust, Trusts: trusts, View: view, State: stateName}
	for _, st := range alerts {
		d.Rows = append(d.Rows, s.row(st, now))
	}
	// Earlier pages' cursors ("-" for the first page), for "Previous".
	var back []string
	if b := q.Get("back"); b != "" && after != "" {
		back = strings.Split(b, ",")
	}
	d.Page = 1
	if after != "" {
		d.Page = max(2, len(back)+1)
		if n, err := strconv.Atoi(q.Get("n")); err == nil && n > 1 {
			d.Page = n
		}
	}
	d.Paged = d.Page > 1
	d.PrevN, d.NextN = d.Page-1, d.Page+1
	for _, st := range openStates {
		d.States = append(d.States, strings.ToLower(strings.TrimPrefix(st.String(), "STATE_")))
	}
	link := func(after string, back []string, n int) string {
		v := url.Values{"trust": {trust}, "view": {view}}
		if stateName != "" {
			v.Set("state", stateName)
		}
		if after != "" {
			v.Set("after", after)
			v.Set("n", strconv.Itoa(n))
			if len(back) > 0 {
				v.Set("back", strings.Join(back, ","))
			}
		}
		return "/worklist?" + v.Encode()
	}
	d.First = link("", nil, 1)
	if d.Page > 1 {
		switch {
		case len(back) == 0:
			if d.Page == 2 {
				d.Prev = d.First
			}
		case back[len(back)-1] == "-":
			d.Prev = d.First
		default:
			d.Prev = link(back[len(back)-1], back[:len(back)-1], d.Page-1)
		}
	}
	if next != "" {
		cur := after
		if cur == "" {
			cur = "-"
		}
		nb := append(slices.Clone(back), cur)
		if len(nb) > worklistBackMax {
			nb = nb[len(nb)-worklistBackMax:]
		}
		d.Next = link(next, nb, d.Page+1)
	}
	s.render(w, r, http.StatusOK, "worklist", page{Title: "Worklist", Session: sess, Data: d})
}

type alertData struct {
	Row     alertRow
	State   *ackv1.AlertState
	Details *eventsv1.AlertDetails
	// DetailsNote says why the details are not shown (shredded, not
	// openable here), when they are not.
	DetailsNote string
	// ReadNote says why the view was not recorded as the alert read (the
	// person was not sent it, or the service did not answer).
	ReadNote  string
	Timeline  []*ackv1.TimelineEntry
	RequestID string
	Reasons   []option
	Closes    []option
	CanAck    bool
	CanAction bool
	CanClose  bool
	Done      string
}

type option struct{ Value, Label string }

var declineReasons = []option{
	{"not_my_patient", "This is not my patient"},
	{"wrong_team", "This should go to another team"},
	{"left_post", "I have left this post"},
	{"other", "Another reason (say which below)"},
}

var closeReasons = []option{
	{"patient-managed", "The patient's care has been arranged outside Herald"},
	{"referrer-confirmed", "The referrer confirmed by telephone"},
	{"duplicate", "A duplicate of another alert"},
	{"other", "Another reason (say which below)"},
}

func (s *Server) alertPage(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	id := r.PathValue("id")
	// Patient details are for the trust's clinicians and fail-safe
	// officers: another reader (a safety lead) is refused them and sees the
	// alert without.
	withoutDetails := ""
	resp, err := s.alerts.GetAlert(r.Context(), &ackv1.GetAlertRequest{AlertId: id, IncludeDetails: true}, s.callOpts(sess)...)
	if status.Code(err) == codes.PermissionDenied {
		resp, err = s.alerts.GetAlert(r.Context(), &ackv1.GetAlertRequest{AlertId: id}, s.callOpts(sess)...)
		withoutDetails = "The patient details are shown to the clinicians and fail-safe officers of the trust only."
	}
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	st := resp.GetState()
	p := sess.Person()
	if len(p.Roles[st.GetTenant()]) == 0 && !p.NetworkWide() {
		s.fail(w, r, sess, errNotYours)
		return
	}
	// A recipient's view is recorded as the alert read (read is not
	// acknowledged; it meets the communicate-by obligation). Each part of
	// the page degrades on its own: a refused MarkRead means the person
	// reads a colleague's alert (access.DecideRead) and may not act on it as
	// its recipient; another failure is said, not hidden, and the rest of
	// the page still shows.
	readNote, recipient := s.markRead(r, sess, id, p, st.GetTenant())
	state := st.GetState()
	clin := recipient && p.Has(st.GetTenant(), identity.RoleClinician)
	details, note := s.openDetails(r, st, resp.GetDetails())
	if withoutDetails != "" {
		note = withoutDetails
	}
	d := alertData{Row: s.row(st, s.clk.Now()), State: st, Details: details, DetailsNote: note, ReadNote: readNote, Timeline: resp.GetTimeline(),
		RequestID: newRequestID(), Reasons: declineReasons, Closes: closeReasons, Done: r.URL.Query().Get("done"),
		CanAck:    clin && !terminal(state) && st.GetAcknowledgedAt() == nil && state != ackv1.State_STATE_QUARANTINED,
		CanAction: clin && st.GetAcknowledgedAt() != nil && st.GetActionedAt() == nil && !terminal(state),
		CanClose:  p.Has(st.GetTenant(), identity.RoleFailsafeOfficer) && !terminal(state),
	}
	if len(d.Timeline) == 0 {
		d.Timeline = st.GetTimeline()
	}
	s.render(w, r, http.StatusOK, "alert", page{Title: "Alert " + st.GetAccessionRef(), Session: sess, Data: d})
}

// markRead records the person's view of the alert as read by a recipient
// (MarkRead). recipient is false when the service refused it (the person
// reads a colleague's alert: not sent to them; a fail-safe officer covers
// every recipient and is never refused); note says what the page tells the
// person when the view was not recorded as read.
func (s *Server) markRead(r *http.Request, sess *oidcauth.Session, id string, p *identity.Person, trust string) (note string, recipient bool) {
	_, err := s.alerts.MarkRead(r.Context(), &ackv1.MarkReadRequest{AlertId: id,
		RequestId: "read-" + newRequestID()}, s.callOpts(sess)...)
	switch {
	case err == nil:
		return "", true
	case status.Code(err) == codes.PermissionDenied:
		return "This alert was sent to a colleague, not to you: you can read it, but only its recipients or the trust's fail-safe officers can accept, decline or action it. Your view is recorded in the audit; it does not count as the recipient reading it.", false
	case status.Code(err) == codes.Unauthenticated:
		return "Your sign-in could not be checked, so your view was not recorded as read. Sign in again to act on this alert.", false
	}
	s.log.WarnContext(r.Context(), "the alert's read could not be recorded", "alert_id", id, "tenant", trust, "error", status.Code(err))
	// Not refused, not recorded: the person may still be a recipient, so
	// the actions stay (the service decides them).
	return "Your view could not be recorded as read just now (a Herald service did not answer). Reload the page to try again.", true
}

// openDetails opens the patient data acknowledgement returned sealed (it
// holds no key): the details to show, or nil and why not. Errors name the
// alert and the key, never the content.
func (s *Server) openDetails(r *http.Request, st *ackv1.AlertState, d *eventsv1.AlertDetails) (*eventsv1.AlertDetails, string) {
	switch {
	case d == nil:
		return nil, ""
	case d.GetSealed() == nil:
		return d, "" // written before patient data was sealed
	case s.cfg.Details == nil:
		return nil, "The patient details are sealed and this console holds no key to open them. Open the report in the radiology system."
	}
	open, err := s.cfg.Details.Open(r.Context(), st.GetTenant(), st.GetAlertId(), d)
	switch {
	case errors.Is(err, sealing.ErrDestroyed):
		return nil, "The patient details of this alert were destroyed at the trust's request (its key was destroyed). The alert's history is kept."
	case err != nil:
		s.log.ErrorContext(r.Context(), "patient details could not be opened", "alert_id", st.GetAlertId(), "tenant", st.GetTenant(), "error", err)
		return nil, "The patient details could not be opened just now. Try again, or open the report in the radiology system."
	}
	return open, ""
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "console-" + hex.EncodeToString(b)
}

// requestID is the form's request id (a resubmitted form repeats it, so the
// service returns the first outcome), or a fresh one.
func requestID(r *http.Request) string {
	if id := r.PostFormValue("request_id"); strings.HasPrefix(id, "console-") && len(id) <= 64 {
		return id
	}
	return newRequestID()
}

// tenantOf fetches the alert's trust for a command's actor (and refuses an
// alert of a trust the person holds no role for).
func (s *Server) tenantOf(r *http.Request, sess *oidcauth.Session, id string) (string, error) {
	resp, err := s.alerts.GetAlert(r.Context(), &ackv1.GetAlertRequest{AlertId: id}, s.callOpts(sess)...)
	if err != nil {
		return "", err
	}
	t := resp.GetState().GetTenant()
	if p := sess.Person(); len(p.Roles[t]) == 0 && !p.NetworkWide() {
		return "", errNotYours
	}
	return t, nil
}

func (s *Server) acknowledge(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	id := r.PathValue("id")
	_, err := s.tenantOf(r, sess, id)
	if err == nil {
		_, err = s.alerts.Acknowledge(r.Context(), &ackv1.AcknowledgeRequest{AlertId: id,
			RequestId: requestID(r)}, s.callOpts(sess)...)
	}
	s.afterCommand(w, r, sess, id, "acknowledged", err)
}

func (s *Server) decline(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	id := r.PathValue("id")
	reason := map[string]eventsv1.DeclineReason{
		"not_my_patient": eventsv1.DeclineReason_DECLINE_REASON_NOT_MY_PATIENT,
		"wrong_team":     eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM,
		"left_post":      eventsv1.DeclineReason_DECLINE_REASON_LEFT_POST,
		"other":          eventsv1.DeclineReason_DECLINE_REASON_OTHER,
	}[r.PostFormValue("reason")]
	note := strings.TrimSpace(r.PostFormValue("note"))
	if reason == 0 || (reason == eventsv1.DeclineReason_DECLINE_REASON_OTHER && note == "") {
		msg := "Select why you are declining this alert"
		if reason != 0 {
			msg = "Say why you are declining this alert"
		}
		s.formError(w, r, sess, id, msg)
		return
	}
	_, err := s.tenantOf(r, sess, id)
	if err == nil {
		_, err = s.alerts.Decline(r.Context(), &ackv1.DeclineRequest{AlertId: id, Reason: reason,
			Note: note, RequestId: requestID(r)}, s.callOpts(sess)...)
	}
	s.afterCommand(w, r, sess, id, "declined", err)
}

func (s *Server) recordAction(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	id := r.PathValue("id")
	action := strings.TrimSpace(r.PostFormValue("action"))
	if action == "" {
		s.formError(w, r, sess, id, "Say what was done")
		return
	}
	_, err := s.tenantOf(r, sess, id)
	if err == nil {
		_, err = s.alerts.RecordAction(r.Context(), &ackv1.RecordActionRequest{AlertId: id,
			Action: action, RequestId: requestID(r)}, s.callOpts(sess)...)
	}
	s.afterCommand(w, r, sess, id, "actioned", err)
}

func (s *Server) closeAlert(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	id := r.PathValue("id")
	code := r.PostFormValue("close_reason")
	note := strings.TrimSpace(r.PostFormValue("close_note"))
	if !slices.ContainsFunc(closeReasons, func(o option) bool { return o.Value == code }) || (code == "other" && note == "") {
		msg := "Select why you are closing this alert"
		if code == "other" {
			msg = "Say why you are closing this alert"
		}
		s.formError(w, r, sess, id, msg)
		return
	}
	trust, err := s.tenantOf(r, sess, id)
	if err == nil && !sess.Person().Has(trust, identity.RoleFailsafeOfficer) {
		err = errNotYours
	}
	if err == nil {
		reason := code
		if note != "" {
			reason += ": " + note
		}
		_, err = s.alerts.Close(r.Context(), &ackv1.CloseRequest{AlertId: id, Reason: reason,
			RequestId: requestID(r)}, s.callOpts(sess)...)
	}
	s.afterCommand(w, r, sess, id, "closed", err)
}

func (s *Server) afterCommand(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session, id, done string, err error) {
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	// Post/redirect/get: a reload does not repeat the command.
	http.Redirect(w, r, "/alerts/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
}

func (s *Server) formError(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session, id, msg string) {
	s.render(w, r, http.StatusBadRequest, "error", page{Title: "There is a problem", Session: sess,
		Error: msg + ".", Data: "/alerts/" + url.PathEscape(id)})
}

func (s *Server) forbidden(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	s.render(w, r, http.StatusForbidden, "error", page{Title: "Not available to you", Session: sess,
		Error: "Your role does not include this page for that trust."})
}

// failsafeData is the fail-safe queue of one trust.
type failsafeData struct {
	Trust  string
	Trusts []string
	Rows   []alertRow
	Next   string
}

func (s *Server) failsafe(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	trust, trusts, ok := trustParam(r, sess.Person(), identity.RoleFailsafeOfficer)
	if !ok {
		s.forbidden(w, r, sess)
		return
	}
	resp, err := s.alerts.ListAlerts(r.Context(), &ackv1.ListAlertsRequest{Tenant: trust, States: []ackv1.State{ackv1.State_STATE_FAILSAFE},
		PageSize: worklistPageSize, PageToken: r.URL.Query().Get("page")}, s.callOpts(sess)...)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	now := s.clk.Now()
	d := failsafeData{Trust: trust, Trusts: trusts}
	for _, st := range resp.GetAlerts() {
		if st.GetTenant() != trust {
			continue
		}
		// ListAlerts answers without timelines (acknowledgement slims
		// them): what was tried, who was contacted and the reminders come
		// from each alert's own timeline.
		if len(st.GetTimeline()) == 0 {
			full, err := s.alerts.GetAlert(r.Context(), &ackv1.GetAlertRequest{AlertId: st.GetAlertId()}, s.callOpts(sess)...)
			if err != nil {
				// One row's history unread never fails the queue: the
				// row stays, saying so.
				s.log.WarnContext(r.Context(), "a fail-safe alert's timeline could not be read", "alert_id", st.GetAlertId(), "error", status.Code(err))
				row := s.row(st, now)
				row.NoTimeline = true
				d.Rows = append(d.Rows, row)
				continue
			}
			st = proto.Clone(st).(*ackv1.AlertState)
			st.Timeline = full.GetTimeline()
			if len(st.Timeline) == 0 {
				st.Timeline = full.GetState().GetTimeline()
			}
		}
		row := s.row(st, now)
		if !row.QueuedAt.IsZero() {
			row.Age = now.Sub(row.QueuedAt)
		}
		d.Rows = append(d.Rows, row)
	}
	// Oldest first: the longest-waiting alert is the most at risk.
	slices.SortStableFunc(d.Rows, func(a, b alertRow) int { return -int(a.Age - b.Age) })
	if t := resp.GetNextPageToken(); t != "" {
		d.Next = "/failsafe?" + url.Values{"trust": {trust}, "page": {t}}.Encode()
	}
	s.render(w, r, http.StatusOK, "failsafe", page{Title: "Fail-safe queue", Session: sess, Data: d})
}
