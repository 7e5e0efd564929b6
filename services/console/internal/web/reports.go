package web

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/identity"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/console/internal/oidcauth"
)

// defaultPeriod is the period a report covers when none is asked: the
// last four whole weeks.
const defaultPeriod = 28 * 24 * time.Hour

type reportForm struct {
	Trust    string
	Trusts   []string
	From, To string // yyyy-mm-dd, To inclusive on the page
	Problem  string
	Query    ReportQuery
	CSV      string
	Print    string
}

// reportQuery reads ?trust, ?from and ?to (dates, to inclusive) for a
// safety lead.
func (s *Server) reportQuery(r *http.Request, sess *oidcauth.Session) (reportForm, bool) {
	trust, trusts, ok := trustParam(r, sess.Person(), identity.RoleSafetyLead)
	if !ok {
		return reportForm{}, false
	}
	now := s.clk.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	f := reportForm{Trust: trust, Trusts: trusts}
	from, to := today.Add(-defaultPeriod), today
	q := r.URL.Query()
	if v := q.Get("from"); v != "" {
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			f.Problem = "Enter the start date as a date, for example 2026-11-02"
		} else {
			from = t
		}
	}
	if v := q.Get("to"); v != "" {
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			f.Problem = "Enter the end date as a date, for example 2026-11-29"
		} else {
			to = t
		}
	}
	if f.Problem == "" && to.Before(from) {
		f.Problem = "The end date must be on or after the start date"
	}
	f.From, f.To = from.Format(time.DateOnly), to.Format(time.DateOnly)
	f.Query = ReportQuery{Trust: trust, From: from, To: to.Add(24 * time.Hour)}
	v := url.Values{"trust": {trust}, "from": {f.From}, "to": {f.To}}
	f.CSV = "/reports/rcr.csv?" + v.Encode()
	f.Print = "/reports/rcr?" + v.Encode()
	return f, true
}

type complianceData struct {
	Form   reportForm
	Report ComplianceReport
}

func (s *Server) compliance(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	f, ok := s.reportQuery(r, sess)
	if !ok {
		s.forbidden(w, r, sess)
		return
	}
	d := complianceData{Form: f}
	if s.reports == nil {
		f.Problem = "The reporting store is not configured for this console"
		d.Form = f
	} else if f.Problem == "" {
		rep, err := s.reports.Compliance(r.Context(), f.Query)
		if err != nil {
			s.fail(w, r, sess, err)
			return
		}
		d.Report = rep
	}
	code := http.StatusOK
	if d.Form.Problem != "" {
		code = http.StatusBadRequest
	}
	s.render(w, r, code, "compliance", page{Title: "Compliance", Session: sess, Data: d})
}

type rcrData struct {
	Form   reportForm
	Report RCRReport
}

func (s *Server) rcrReport(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) (rcrData, bool) {
	f, ok := s.reportQuery(r, sess)
	if !ok {
		s.forbidden(w, r, sess)
		return rcrData{}, false
	}
	d := rcrData{Form: f}
	if s.reports == nil {
		d.Form.Problem = "The reporting store is not configured for this console"
		return d, true
	}
	if f.Problem != "" {
		return d, true
	}
	rep, err := s.reports.RCRAudit(r.Context(), f.Query)
	if err != nil {
		s.fail(w, r, sess, err)
		return rcrData{}, false
	}
	d.Report = rep
	return d, true
}

func (s *Server) rcr(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	d, ok := s.rcrReport(w, r, sess)
	if !ok {
		return
	}
	code := http.StatusOK
	if d.Form.Problem != "" {
		code = http.StatusBadRequest
	}
	s.render(w, r, code, "rcr", page{Title: "RCR audit report", Session: sess, Data: d})
}

// rcrCSV exports the RCR audit as CSV (one row per category, with the
// numerator, denominator and proportion).
func (s *Server) rcrCSV(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	d, ok := s.rcrReport(w, r, sess)
	if !ok {
		return
	}
	if d.Form.Problem != "" {
		http.Error(w, d.Form.Problem, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="herald-rcr-audit-%s-%s-%s.csv"`,
		d.Form.Trust, d.Form.From, d.Form.To))
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"trust", "from", "to", "category", "target_minutes", "acknowledged_in_target", "alerts", "percent", "standard_percent", "met"})
	for _, row := range d.Report.Rows {
		// Target and Standard are 0 when unknown: empty cells, not "0".
		target, standard, met := "", "", ""
		if row.Target > 0 {
			target = strconv.FormatFloat(row.Target.Minutes(), 'f', -1, 64)
		}
		if row.Standard > 0 {
			standard, met = strconv.FormatFloat(row.Standard, 'f', 1, 64), strconv.FormatBool(row.Met())
		}
		_ = cw.Write([]string{d.Form.Trust, d.Form.From, d.Form.To, row.Category, target,
			strconv.Itoa(row.Numerator), strconv.Itoa(row.Denominator), strconv.FormatFloat(row.Percent(), 'f', 1, 64),
			standard, met})
	}
	cw.Flush()
}

type policyData struct {
	Trust, Trusts  []string
	Selected       string
	Category, At   string
	Referrer, Team string
	Categories     []option
	Problem        string
	Asked          bool
	Result         *rulesv1.EvaluateResponse
	Versions       []*rulesv1.BundleVersion
	Approvals      approvalsData
}

// policyPage is the policy page of trust without a dry run yet: the form's
// values, the versions and the pending approvals.
func (s *Server) policyPage(r *http.Request, sess *oidcauth.Session, trust string, trusts []string) policyData {
	if trusts == nil {
		trusts = trustsWith(sess.Person(), identity.RoleSafetyLead, identity.RolePolicyAdmin, identity.RoleFailsafeOfficer)
	}
	q := r.URL.Query()
	d := policyData{Trusts: trusts, Selected: trust, Category: q.Get("category"), At: q.Get("at"),
		Referrer: strings.TrimSpace(q.Get("referrer")), Team: strings.TrimSpace(q.Get("team"))}
	for _, c := range []eventsv1.Category{eventsv1.Category_CATEGORY_CRITICAL, eventsv1.Category_CATEGORY_URGENT,
		eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED, eventsv1.Category_CATEGORY_CANCER} {
		d.Categories = append(d.Categories, option{Value: strings.ToLower(strings.TrimPrefix(c.String(), "CATEGORY_")), Label: categoryName(c)})
	}
	if d.At == "" {
		d.At = s.clk.Now().UTC().Format("2006-01-02T15:04")
	}
	if s.rules == nil {
		d.Problem = "The rules service is not configured for this console"
		return d
	}
	if v, err := s.rules.ListBundleVersions(r.Context(), &rulesv1.ListBundleVersionsRequest{Tenant: trust}, s.callOpts(sess)...); err == nil {
		d.Versions = v.GetVersions()
	}
	d.Approvals = s.approvals(r, sess, trust)
	return d
}

// policy answers "who would be contacted, and when" for a trust, category,
// referrer and instant, from the rules service's dry run, and lists the
// bundles awaiting a second person's approval.
func (s *Server) policy(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
	trust, trusts, ok := trustParam(r, sess.Person(), identity.RoleSafetyLead, identity.RolePolicyAdmin, identity.RoleFailsafeOfficer)
	if !ok {
		s.forbidden(w, r, sess)
		return
	}
	q := r.URL.Query()
	d := s.policyPage(r, sess, trust, trusts)
	if s.rules == nil {
		s.render(w, r, http.StatusOK, "policy", page{Title: "Who is contacted", Session: sess, Data: d})
		return
	}
	if q.Get("category") != "" {
		d.Asked = true
		cat := eventsv1.Category(eventsv1.Category_value["CATEGORY_"+strings.ToUpper(d.Category)])
		at, err := time.Parse("2006-01-02T15:04", d.At)
		switch {
		case cat == 0:
			d.Problem = "Select a category"
		case err != nil:
			d.Problem = "Enter the time as a date and time, for example 2026-12-07T03:00"
		default:
			resp, err := s.rules.Evaluate(r.Context(), &rulesv1.EvaluateRequest{Tenant: trust, At: timestamppb.New(at),
				Details: &eventsv1.AlertDetails{SourceFlag: &eventsv1.SourceFlag{Category: cat},
					Referrer: &eventsv1.Clinician{Id: d.Referrer, Team: d.Team}}}, s.callOpts(sess)...)
			if err != nil {
				s.fail(w, r, sess, err)
				return
			}
			d.Result = resp
		}
	}
	code := http.StatusOK
	if d.Problem != "" && d.Asked {
		code = http.StatusBadRequest
	}
	s.render(w, r, code, "policy", page{Title: "Who is contacted", Session: sess, Data: d})
}
