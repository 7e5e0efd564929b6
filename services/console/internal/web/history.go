package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/herald-health/herald/platform/authz/access"
	"github.com/herald-health/herald/platform/identity"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	"github.com/herald-health/herald/services/console/internal/oidcauth"
)

// History is what the search and governance-timeline pages need of the
// reporting read model: every alert, open or closed, by trust. The console
// passes only a trust the person holds a role for; the read model answers
// for exactly that trust. A Reporting that also implements History serves
// these pages; without one they say reporting is not configured.
type History interface {
	Search(ctx context.Context, q SearchQuery) (SearchResult, error)
	// AlertHistory returns the alert's summary and every event in log
	// order, or ErrNoHistory when the trust has no such alert.
	AlertHistory(ctx context.Context, trust, alertID string) (AlertHistory, error)
}

// ErrNoHistory: no alert with that id in that trust.
var ErrNoHistory = errors.New("no such alert in the reporting store for that trust")

// SearchQuery selects a trust's alerts; the empty fields match everything.
// From/To bound the raise time [From, To); Cursor continues a search.
type SearchQuery struct {
	Trust     string
	Accession string
	Reference string
	From, To  time.Time
	Cursor    string
	Limit     int
}

// SearchResult is one page, newest raised first; Next continues it.
type SearchResult struct {
	Alerts []AlertSummary
	Next   string
}

// AlertSummary is an alert as the read model keeps it (no patient data).
type AlertSummary struct {
	ID, Trust, Reference, Accession string
	Category, State                 string
	PolicyID, PolicyVersion         string
	RaisedAt                        time.Time
	AcknowledgedAt, ClosedAt        time.Time // zero: not (yet)
}

// AlertHistory is the governance timeline of one alert.
type AlertHistory struct {
	Summary AlertSummary
	Events  []HistoryEvent
}

// HistoryEvent is one event: who acted (id, name, role, identity
// provider), whom a message went to and its delivery state, and the policy
// version an event was decided under.
type HistoryEvent struct {
	EventID  string    `json:"event_id"`
	Type     string    `json:"type"`
	At       time.Time `json:"at"`
	ActorID  string    `json:"actor_id,omitempty"`
	Name     string    `json:"actor_name,omitempty"`
	Role     string    `json:"actor_role,omitempty"`
	Provider string    `json:"actor_identity_provider,omitempty"`
	// A message: its recipient, channel, id and state (sent, failed,
	// delivered, deferred, digest, superseded, breach-notice, resolved).
	Recipient      string `json:"recipient_id,omitempty"`
	Channel        string `json:"channel,omitempty"`
	NotificationID string `json:"notification_id,omitempty"`
	Delivery       string `json:"delivery,omitempty"`
	Step           *int   `json:"step,omitempty"`
	Repeat         *int   `json:"repeat,omitempty"`
	// Reason in fixed words (decline, escalation, supersession, failure
	// kind) and the breached clock.
	Reason        string `json:"reason,omitempty"`
	Clock         string `json:"clock,omitempty"`
	PolicyID      string `json:"policy_id,omitempty"`
	PolicyVersion string `json:"policy_version,omitempty"`
}

// historyRoles may search and read governance timelines of their trusts.
var historyRoles = []identity.Role{identity.RoleClinician, identity.RoleFailsafeOfficer, identity.RoleSafetyLead, identity.RolePolicyAdmin}

func (s *Server) history() History {
	h, _ := s.reports.(History)
	return h
}

type searchData struct {
	Trust                                string
	Trusts                               []string
	Accession, Reference, From, To       string
	Asked                                bool
	Problem, ProblemField, NotConfigured string
	Result                               SearchResult
	Next                                 string
}

// search finds alerts of one of the person's trusts by accession, alert
// reference and raise date (GET form: works without JavaScript, and a
// search is a link that can be kept).
func (s *Server) search(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	trust, trusts, ok := trustParam(r, sess.Person(), historyRoles...)
	if !ok {
		s.forbidden(w, r, sess)
		return
	}
	q := r.URL.Query()
	d := searchData{Trust: trust, Trusts: trusts, Accession: strings.TrimSpace(q.Get("accession")),
		Reference: strings.TrimSpace(q.Get("reference")), From: q.Get("from"), To: q.Get("to")}
	h := s.history()
	if h == nil {
		d.NotConfigured = "Search needs the reporting store, which is not configured for this console."
		s.render(w, r, http.StatusOK, "search", page{Title: "Find an alert", Session: sess, Data: d})
		return
	}
	d.Asked = d.Accession != "" || d.Reference != "" || d.From != "" || d.To != "" || q.Has("search")
	if !d.Asked {
		s.render(w, r, http.StatusOK, "search", page{Title: "Find an alert", Session: sess, Data: d})
		return
	}
	sq := SearchQuery{Trust: trust, Accession: d.Accession, Reference: d.Reference, Cursor: q.Get("cursor"), Limit: worklistPageSize}
	var err error
	if d.From != "" {
		if sq.From, err = time.Parse(time.DateOnly, d.From); err != nil {
			d.Problem, d.ProblemField = "Enter the start date as a date, for example 2026-11-02", "from"
		}
	}
	if d.To != "" && d.Problem == "" {
		if sq.To, err = time.Parse(time.DateOnly, d.To); err != nil {
			d.Problem, d.ProblemField = "Enter the end date as a date, for example 2026-11-29", "to"
		}
		sq.To = sq.To.AddDate(0, 0, 1) // the end date is included
	}
	if d.Problem == "" && !sq.From.IsZero() && !sq.To.IsZero() && !sq.From.Before(sq.To) {
		d.Problem, d.ProblemField = "The end date must be the same as or after the start date", "to"
	}
	if d.Problem != "" {
		s.render(w, r, http.StatusBadRequest, "search", page{Title: "Find an alert", Session: sess, Data: d})
		return
	}
	if d.Result, err = h.Search(r.Context(), sq); err != nil {
		s.fail(w, r, sess, err)
		return
	}
	kept := d.Result.Alerts[:0]
	for _, a := range d.Result.Alerts {
		if a.Trust == trust { // never another trust's alert, whatever the store returned
			kept = append(kept, a)
		}
	}
	d.Result.Alerts = kept
	if d.Result.Next != "" {
		next := url.Values{"trust": {trust}, "accession": {d.Accession}, "reference": {d.Reference}, "from": {d.From}, "to": {d.To}, "cursor": {d.Result.Next}}
		d.Next = "/search?" + next.Encode()
	}
	s.render(w, r, http.StatusOK, "search", page{Title: "Find an alert", Session: sess, Data: d})
}

type historyData struct {
	Trust   string
	History AlertHistory
	JSON    string
	// Evidence is the evidential record's download (JSON; EvidenceHTML
	// the printable page), for the person who may export it ("" otherwise).
	Evidence, EvidenceHTML string
}

// alertHistory finds the alert's governance timeline in the trusts the
// person holds a role for (?trust= names one; a network-wide person must).
func (s *Server) alertHistory(r *http.Request, sess *oidcauth.Session) (string, AlertHistory, error) {
	h := s.history()
	if h == nil {
		return "", AlertHistory{}, errNoReporting
	}
	p := sess.Person()
	trusts := trustsWith(p, historyRoles...)
	if want := r.URL.Query().Get("trust"); want != "" {
		trusts = nil
		for _, role := range historyRoles {
			if p.Has(want, role) {
				trusts = []string{want}
				break
			}
		}
	}
	id := r.PathValue("id")
	for _, t := range trusts {
		if t == identity.AllTrusts {
			continue
		}
		hist, err := h.AlertHistory(r.Context(), t, id)
		if errors.Is(err, ErrNoHistory) {
			continue
		}
		if err != nil {
			return "", AlertHistory{}, err
		}
		if hist.Summary.Trust != t {
			break // never another trust's alert
		}
		return t, hist, nil
	}
	return "", AlertHistory{}, errNotYours
}

var errNoReporting = errors.New("the reporting store is not configured")

// timeline is the governance timeline of one alert: every event in log
// order, the delivery state of each message, who acted, the policy
// version, and the export.
func (s *Server) timeline(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	trust, hist, err := s.alertHistory(r, sess)
	if errors.Is(err, errNoReporting) {
		s.render(w, r, http.StatusOK, "error", page{Title: "Reporting is not configured", Session: sess,
			Error: "The governance timeline needs the reporting store, which is not configured for this console."})
		return
	}
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	d := historyData{Trust: trust, History: hist,
		JSON: "/alerts/" + url.PathEscape(hist.Summary.ID) + "/timeline.json?" + url.Values{"trust": {trust}}.Encode()}
	if p := sess.Person(); access.HasAny(p, trust, access.AuditExporters...) {
		d.Evidence = "/alerts/" + url.PathEscape(hist.Summary.ID) + "/evidence.json"
		d.EvidenceHTML = "/alerts/" + url.PathEscape(hist.Summary.ID) + "/evidence.html"
	}
	s.render(w, r, http.StatusOK, "timeline", page{Title: "Governance timeline " + hist.Summary.Reference, Session: sess, Data: d})
}

// timelineJSON downloads the governance timeline as JSON (no patient data:
// ids, times, actors, delivery states, policy versions).
func (s *Server) timelineJSON(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	trust, hist, err := s.alertHistory(r, sess)
	if err != nil {
		if errors.Is(err, errNoReporting) {
			http.Error(w, "the reporting store is not configured", http.StatusNotFound)
			return
		}
		s.fail(w, r, sess, err)
		return
	}
	out := struct {
		Trust         string         `json:"trust"`
		AlertID       string         `json:"alert_id"`
		Reference     string         `json:"reference,omitempty"`
		Accession     string         `json:"accession,omitempty"`
		Category      string         `json:"category,omitempty"`
		State         string         `json:"state"`
		PolicyID      string         `json:"policy_id,omitempty"`
		PolicyVersion string         `json:"policy_version,omitempty"`
		ExportedAt    time.Time      `json:"exported_at"`
		ExportedBy    string         `json:"exported_by"`
		Events        []HistoryEvent `json:"events"`
	}{Trust: trust, AlertID: hist.Summary.ID, Reference: hist.Summary.Reference, Accession: hist.Summary.Accession,
		Category: hist.Summary.Category, State: hist.Summary.State, PolicyID: hist.Summary.PolicyID,
		PolicyVersion: hist.Summary.PolicyVersion, ExportedAt: s.clk.Now().UTC(), ExportedBy: sess.PersonID, Events: hist.Events}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="herald-timeline-`+safeFileName(hist.Summary.ID)+`.json"`)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// evidence downloads the alert's evidential record, the same content and
// chain proof as heraldctl audit export (acknowledgement's ExportAudit,
// called with the person's token: safety leads and fail-safe officers of
// the alert's trust; acknowledgement records each export in the audit as
// a read). format is "json" (a download) or "html" (the printable page).
func (s *Server) evidence(format string) func(http.ResponseWriter, *http.Request, *oidcauth.Session) {
	return func(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
		id := r.PathValue("id")
		if !access.HoldsAnywhere(sess.Person(), access.AuditExporters...) {
			s.forbidden(w, r, sess)
			return
		}
		x, err := s.alerts.ExportAudit(r.Context(), &ackv1.ExportAuditRequest{AlertId: id}, s.callOpts(sess)...)
		if err != nil {
			s.fail(w, r, sess, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		name := "herald-evidence-" + safeFileName(id)
		if format == "html" {
			// The page is the export's own, self-contained (no scripts).
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
			w.Header().Set("Content-Disposition", `inline; filename="`+name+`.html"`)
			_, _ = w.Write(x.GetHtml())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.json"`)
		_, _ = w.Write(x.GetJson())
	}
}
