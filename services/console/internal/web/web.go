// Package web is the console's pages: server-rendered html/template pages
// on the NHS.UK frontend, every task a plain form that works without
// JavaScript (Chart.js only draws the charts beside their data tables).
//
// The pages call the other services through the small interfaces below, as
// the signed-in person: each gRPC call carries the person's access token as
// a bearer (Bearer), so the services authorize the person, not the console.
// The console also refuses, itself, to show anything of a trust the person
// holds no role for (defence in depth: a service's filter is not the only
// wall between trusts).
//
// Patient data (NHS number, name, date of birth, the report) appears on the
// alert page only, after sign-in; no page is cached (Cache-Control:
// no-store) and nothing of it is logged.
package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/identity"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/console/internal/oidcauth"
)

//go:embed templates
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Alerts is what the console needs of the acknowledgement service (the
// generated client satisfies it).
type Alerts interface {
	ListAlerts(ctx context.Context, in *ackv1.ListAlertsRequest, opts ...grpc.CallOption) (*ackv1.ListAlertsResponse, error)
	GetAlert(ctx context.Context, in *ackv1.GetAlertRequest, opts ...grpc.CallOption) (*ackv1.GetAlertResponse, error)
	MarkRead(ctx context.Context, in *ackv1.MarkReadRequest, opts ...grpc.CallOption) (*ackv1.MarkReadResponse, error)
	Acknowledge(ctx context.Context, in *ackv1.AcknowledgeRequest, opts ...grpc.CallOption) (*ackv1.AcknowledgeResponse, error)
	Decline(ctx context.Context, in *ackv1.DeclineRequest, opts ...grpc.CallOption) (*ackv1.DeclineResponse, error)
	RecordAction(ctx context.Context, in *ackv1.RecordActionRequest, opts ...grpc.CallOption) (*ackv1.RecordActionResponse, error)
	Close(ctx context.Context, in *ackv1.CloseRequest, opts ...grpc.CallOption) (*ackv1.CloseResponse, error)
	ExportAudit(ctx context.Context, in *ackv1.ExportAuditRequest, opts ...grpc.CallOption) (*ackv1.ExportAuditResponse, error)
}

// Rules is what the policy page needs of the rules service.
type Rules interface {
	Evaluate(ctx context.Context, in *rulesv1.EvaluateRequest, opts ...grpc.CallOption) (*rulesv1.EvaluateResponse, error)
	ListBundleVersions(ctx context.Context, in *rulesv1.ListBundleVersionsRequest, opts ...grpc.CallOption) (*rulesv1.ListBundleVersionsResponse, error)
	// Change control (the two-person rule is the rules service's).
	ListPendingBundles(ctx context.Context, in *rulesv1.ListPendingBundlesRequest, opts ...grpc.CallOption) (*rulesv1.ListPendingBundlesResponse, error)
	DryRunBundle(ctx context.Context, in *rulesv1.DryRunBundleRequest, opts ...grpc.CallOption) (*rulesv1.DryRunBundleResponse, error)
	ApproveBundle(ctx context.Context, in *rulesv1.ApproveBundleRequest, opts ...grpc.CallOption) (*rulesv1.ApproveBundleResponse, error)
	RejectBundle(ctx context.Context, in *rulesv1.RejectBundleRequest, opts ...grpc.CallOption) (*rulesv1.RejectBundleResponse, error)
}

// Sessions is the sign-in machinery (oidcauth.Auth).
type Sessions interface {
	Routes(mux *http.ServeMux)
	Session(w http.ResponseWriter, r *http.Request) (*oidcauth.Session, error)
}

// DemoUser is a development identity offered on the sign-in page
// (development profile only): the hint is passed to the provider.
type DemoUser struct {
	Hint, Label string
}

// Config is the pages' configuration.
type Config struct {
	// InsecureTransport: the gRPC hops are plaintext (development); the
	// bearer is then sent without transport security.
	InsecureTransport bool
	// LinkAlert, when set, turns an acknowledge-link token into the alert
	// id it names (nil: /ack/ links are not served here).
	LinkAlert func(token string, now time.Time) (alertID string, err error)
	// DemoUsers are offered on the sign-in page (development only).
	DemoUsers []DemoUser
	// Extra pages mounted as they are (e.g. the developer's captured
	// messages under make run), linked from the footer.
	Extra map[string]http.Handler
	// HSTS adds Strict-Transport-Security (HTTPS listener).
	HSTS bool
	// Details opens the patient data of an alert's details, sealed with
	// the trust's key (platform/sealing); nil: the alert page says the
	// details are not available here.
	Details DetailsOpener
}

// DetailsOpener opens sealed patient details (a *sealing.Keyring).
type DetailsOpener interface {
	Open(ctx context.Context, trust, alertID string, d *eventsv1.AlertDetails) (*eventsv1.AlertDetails, error)
}

// Server is the console's HTTP handler.
type Server struct {
	cfg     Config
	auth    Sessions
	alerts  Alerts
	rules   Rules
	reports Reporting
	clk     clock.Clock
	log     *slog.Logger
	pages   map[string]*template.Template
	mux     *http.ServeMux
}

// New returns the console's handler. rules and reports may be nil: their
// pages then say the service is not configured.
func New(cfg Config, auth Sessions, alerts Alerts, rules Rules, reports Reporting, clk clock.Clock, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, auth: auth, alerts: alerts, rules: rules, reports: reports, clk: clk, log: log,
		pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/*.tmpl", n)
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", n, err)
		}
		s.pages[base] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	s.mux.Handle("GET /assets/", files)
	auth.Routes(s.mux)
	s.mux.HandleFunc("GET /{$}", s.home)
	s.mux.HandleFunc("GET /signed-out", s.signedOut)
	s.mux.HandleFunc("GET /ack/{token}", s.ackLink)
	s.mux.HandleFunc("GET /worklist", s.signedIn(s.worklist))
	s.mux.HandleFunc("GET /alerts/{id}", s.signedIn(s.alertPage))
	s.mux.HandleFunc("POST /alerts/{id}/acknowledge", s.signedIn(s.acknowledge))
	s.mux.HandleFunc("POST /alerts/{id}/decline", s.signedIn(s.decline))
	s.mux.HandleFunc("POST /alerts/{id}/action", s.signedIn(s.recordAction))
	s.mux.HandleFunc("POST /alerts/{id}/close", s.signedIn(s.closeAlert))
	s.mux.HandleFunc("GET /failsafe", s.signedIn(s.failsafe))
	s.mux.HandleFunc("GET /compliance", s.signedIn(s.compliance))
	s.mux.HandleFunc("GET /reports/rcr", s.signedIn(s.rcr))
	s.mux.HandleFunc("GET /reports/rcr.csv", s.signedIn(s.rcrCSV))
	s.mux.HandleFunc("GET /policy", s.signedIn(s.policy))
	s.mux.HandleFunc("GET /search", s.signedIn(s.search))
	s.mux.HandleFunc("GET /alerts/{id}/timeline", s.signedIn(s.timeline))
	s.mux.HandleFunc("GET /alerts/{id}/timeline.json", s.signedIn(s.timelineJSON))
	s.mux.HandleFunc("GET /alerts/{id}/evidence.json", s.signedIn(s.evidence("json")))
	s.mux.HandleFunc("GET /alerts/{id}/evidence.html", s.signedIn(s.evidence("html")))
	s.mux.HandleFunc("POST /policy/approve", s.signedIn(s.reviewBundle(true)))
	s.mux.HandleFunc("POST /policy/reject", s.signedIn(s.reviewBundle(false)))
	for path, h := range cfg.Extra {
		s.mux.Handle(path, h)
	}
	return s, nil
}

// ServeHTTP adds the security headers to every response.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	style := "'self'"
	if strings.HasPrefix(r.URL.Path, "/dev/") {
		// Development pages mounted as they are (make run's captured
		// messages) carry their own inline styles.
		style = "'self' 'unsafe-inline'"
	}
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src "+style+"; img-src 'self' data:; "+
		"font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Acknowledge-link tokens are in URLs: never send them on.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if s.cfg.HSTS {
		h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
	}
	if strings.HasPrefix(r.URL.Path, "/static/") || strings.HasPrefix(r.URL.Path, "/assets/") {
		h.Set("Cache-Control", "public, max-age=3600")
	} else {
		// Pages may hold patient data: never cached, by the browser or
		// anything between.
		h.Set("Cache-Control", "no-store")
		h.Set("Pragma", "no-cache")
	}
	s.mux.ServeHTTP(w, r)
}

// Bearer is per-RPC credentials carrying a person's access token.
type Bearer struct {
	Token    string
	Insecure bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.Token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// token goes over TLS only, unless the hops are plaintext on purpose.
func (b Bearer) RequireTransportSecurity() bool { return !b.Insecure }

var _ credentials.PerRPCCredentials = Bearer{}

// page is what every template gets.
type page struct {
	Title   string
	Session *oidcauth.Session
	Nav     []navItem
	Demo    []DemoUser
	Return  string
	Data    any
	Error   string
	Extra   []string
}

type navItem struct {
	Href, Label string
	Current     bool
}

type handler func(w http.ResponseWriter, r *http.Request, s *oidcauth.Session)

// signedIn sends a person who is not signed in to the sign-in, returning
// to the page they asked for; nothing of the page is fetched before.
func (s *Server) signedIn(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.auth.Session(w, r)
		if err != nil {
			s.fail(w, r, nil, err)
			return
		}
		if sess == nil {
			http.Redirect(w, r, oidcauth.LoginURL(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && r.PostFormValue("csrf") != sess.CSRF {
			s.render(w, r, http.StatusForbidden, "error", page{Title: "This form has expired", Session: sess,
				Error: "This form has expired. Go back, reload the page and try again."})
			return
		}
		h(w, r, sess)
	}
}

func (s *Server) callOpts(sess *oidcauth.Session) []grpc.CallOption {
	return []grpc.CallOption{grpc.PerRPCCredentials(Bearer{Token: sess.AccessToken, Insecure: s.cfg.InsecureTransport})}
}

func (s *Server) nav(sess *oidcauth.Session, current string) []navItem {
	if sess == nil {
		return nil
	}
	p := sess.Person()
	var items []navItem
	add := func(href, label string, roles ...identity.Role) {
		if len(trustsWith(p, roles...)) > 0 {
			items = append(items, navItem{Href: href, Label: label, Current: href == current})
		}
	}
	add("/worklist", "Worklist", identity.RoleClinician, identity.RoleFailsafeOfficer)
	add("/failsafe", "Fail-safe queue", identity.RoleFailsafeOfficer)
	add("/compliance", "Compliance", identity.RoleSafetyLead)
	add("/reports/rcr", "RCR audit", identity.RoleSafetyLead)
	add("/policy", "Who is contacted", identity.RoleSafetyLead, identity.RolePolicyAdmin, identity.RoleFailsafeOfficer)
	if s.history() != nil {
		add("/search", "Find an alert", historyRoles...)
	}
	return items
}

// trustsWith returns the trusts for which p holds one of roles. A
// network-wide binding does not enumerate trusts here: such a person names
// the trust in the query (see trustParam).
func trustsWith(p *identity.Person, roles ...identity.Role) []string {
	var out []string
	for _, t := range p.Trusts() {
		for _, r := range roles {
			if p.Has(t, r) {
				out = append(out, t)
				break
			}
		}
	}
	if len(out) == 0 && p.NetworkWide() {
		for _, r := range roles {
			if slices.Contains(p.Roles[identity.AllTrusts], r) {
				return []string{identity.AllTrusts}
			}
		}
	}
	return out
}

// trustParam picks the trust a page is about: the query's ?trust= when the
// person holds one of roles for it, else their first such trust. ok is
// false when they hold none (the page is refused).
func trustParam(r *http.Request, p *identity.Person, roles ...identity.Role) (trust string, all []string, ok bool) {
	all = trustsWith(p, roles...)
	if len(all) == 0 {
		return "", nil, false
	}
	want := strings.TrimSpace(r.URL.Query().Get("trust"))
	if want == "" {
		want = r.PostFormValue("trust")
	}
	if want != "" {
		for _, role := range roles {
			if p.Has(want, role) {
				return want, all, true
			}
		}
		return "", all, false
	}
	if all[0] == identity.AllTrusts {
		return "", all, false
	}
	return all[0], all, true
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	t, ok := s.pages[name]
	if !ok {
		http.Error(w, "page not found", http.StatusInternalServerError)
		return
	}
	if p.Nav == nil {
		p.Nav = s.nav(p.Session, r.URL.Path)
	}
	for path := range s.cfg.Extra {
		p.Extra = append(p.Extra, strings.TrimPrefix(path, "GET "))
	}
	slices.Sort(p.Extra)
	// Rendered whole before anything is sent: a template failure is a
	// clean error page, never half a page.
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		s.log.ErrorContext(r.Context(), "render console page", slog.String("page", name), slog.Any("error", err))
		http.Error(w, "This page could not be shown. Try again; if this persists, call the service desk.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = buf.WriteTo(w)
}

// fail renders a service error without its details (they may name
// internals); NotFound and PermissionDenied look alike, so a person of
// another trust learns nothing of an alert's existence.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session, err error) {
	code, msg := http.StatusBadGateway, "A Herald service did not answer. Try again in a minute; if this persists, call the service desk."
	switch status.Code(err) {
	case codes.NotFound, codes.PermissionDenied:
		code, msg = http.StatusNotFound, "There is no alert here that you can see."
	case codes.Unauthenticated:
		http.Redirect(w, r, oidcauth.LoginURL(r.URL.RequestURI()), http.StatusSeeOther)
		return
	case codes.InvalidArgument, codes.FailedPrecondition:
		code, msg = http.StatusBadRequest, "That could not be done: "+status.Convert(err).Message()
	}
	if errors.Is(err, errNotYours) {
		code, msg = http.StatusNotFound, "There is no alert here that you can see."
	}
	attrs := []any{slog.String("path", r.URL.Path), slog.Int("status", code), slog.Any("error", status.Code(err))}
	if _, isStatus := status.FromError(err); !isStatus {
		// The console's own failure (its reporting store, a template):
		// "Unknown" alone would leave the operator nothing to go on. Its
		// errors name queries and columns, never patient data.
		attrs = append(attrs, slog.String("cause", err.Error()))
	}
	s.log.WarnContext(r.Context(), "console request failed", attrs...)
	s.render(w, r, code, "error", page{Title: "Something went wrong", Session: sess, Error: msg})
}

var errNotYours = errors.New("alert of a trust the person holds no role for")

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	sess, err := s.auth.Session(w, r)
	if err != nil {
		s.fail(w, r, nil, err)
		return
	}
	if sess != nil {
		nav := s.nav(sess, "")
		if len(nav) > 0 {
			http.Redirect(w, r, nav[0].Href, http.StatusSeeOther)
			return
		}
		s.render(w, r, http.StatusForbidden, "error", page{Title: "No role", Session: sess,
			Error: "You are signed in, but hold no Herald role for any trust. Ask your trust's Herald administrator."})
		return
	}
	s.render(w, r, http.StatusOK, "signin", page{Title: "Sign in", Demo: s.cfg.DemoUsers, Return: oidcauth.SafeReturn(r.URL.Query().Get("return"))})
}

func (s *Server) signedOut(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "signedout", page{Title: "You have signed out"})
}

// ackLink lands an emailed acknowledge link on the alert page (after
// sign-in); an expired or damaged link says so and offers the worklist.
func (s *Server) ackLink(w http.ResponseWriter, r *http.Request) {
	if s.cfg.LinkAlert == nil {
		s.render(w, r, http.StatusNotFound, "error", page{Title: "Link not recognised",
			Error: "This console does not take acknowledge links. Sign in and open your worklist."})
		return
	}
	id, err := s.cfg.LinkAlert(r.PathValue("token"), s.clk.Now())
	if err != nil || id == "" {
		s.render(w, r, http.StatusGone, "error", page{Title: "This link has expired",
			Error: "This link has expired or is not valid. Sign in and open your worklist: the alert is there if it is still yours."})
		return
	}
	http.Redirect(w, r, "/alerts/"+id, http.StatusSeeOther)
}
