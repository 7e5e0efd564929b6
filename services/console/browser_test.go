package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/oauth2-proxy/mockoidc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/freeport"
	"github.com/herald-health/herald/platform/sealing"
	"github.com/herald-health/herald/platform/servicemain"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/console"
)

const (
	patientName = "FAKENAME"
	reportText  = "Large right-sided pneumothorax"
)

var widths = []int64{375, 768, 1280}

// harness is a console process (its composition root, on loopback ports)
// with mockoidc as the identity provider and gRPC peers for
// acknowledgement and rules.
type harness struct {
	url   string
	oidc  *mockoidc.MockOIDC
	ack   *ackPeer
	rules *rulesPeer
	rep   *reports
	// links signs acknowledge links as notification does; the console
	// verifies them with the public half.
	links *acklink.Signer
	// start is the time the fake alerts' times are relative to.
	start time.Time
	// keyring is the console's patient-data keyring file.
	keyring string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	now := time.Now()
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	ack := &ackPeer{alerts: map[string]*ackv1.AlertState{
		"alert-a1": {AlertId: "alert-a1", Tenant: "RX1", AccessionRef: "HRL-A1", State: ackv1.State_STATE_NOTIFIED,
			Category: eventsv1.Category_CATEGORY_URGENT, RaisedAt: ts(-3 * time.Hour), StepRecipients: []string{"dr-a"},
			Clocks: &eventsv1.Clocks{AcknowledgeBy: ts(-time.Hour), ActionBy: ts(20 * time.Hour)}},
		"alert-a2": {AlertId: "alert-a2", Tenant: "RX1", AccessionRef: "HRL-A2", State: ackv1.State_STATE_NOTIFIED,
			Category: eventsv1.Category_CATEGORY_CRITICAL, RaisedAt: ts(-10 * time.Minute), StepRecipients: []string{"dr-a"},
			Clocks: &eventsv1.Clocks{AcknowledgeBy: ts(50 * time.Minute)}},
		"alert-a3": {AlertId: "alert-a3", Tenant: "RX1", AccessionRef: "HRL-A3", State: ackv1.State_STATE_FAILSAFE,
			Category: eventsv1.Category_CATEGORY_CRITICAL, RaisedAt: ts(-5 * time.Hour), Timeline: []*ackv1.TimelineEntry{
				{Type: "NotificationSent", PersonId: "dr-a", At: ts(-5 * time.Hour), Summary: "sms step 0"},
				{Type: "NotificationSent", PersonId: "dr-a", At: ts(-4 * time.Hour), Summary: "sms step 0 repeat 1"},
				{Type: "NotificationFailed", PersonId: "dr-c", At: ts(-3 * time.Hour), Summary: "email bounced"},
				{Type: "FailsafeQueued", At: ts(-2 * time.Hour), Summary: "policy exhausted"},
				// The fail-safe message, then one reminder: counted from
				// the entries' step and repeat, not their summaries' words
				// (which say nothing of the repeat here).
				{Type: "NotificationSent", PersonId: "fs-1", At: ts(-2 * time.Hour), Summary: "sent via CHANNEL_EMAIL", Notification: true, Step: 2},
				{Type: "NotificationSent", PersonId: "fs-1", At: ts(-time.Hour), Summary: "sent via CHANNEL_EMAIL", Notification: true, Step: 2, Repeat: 1},
			}},
		"alert-b1": {AlertId: "alert-b1", Tenant: "RX2", AccessionRef: "HRL-B1", State: ackv1.State_STATE_NOTIFIED,
			Category: eventsv1.Category_CATEGORY_CRITICAL, RaisedAt: ts(-time.Hour), StepRecipients: []string{"dr-b"}},
	}, details: map[string]*eventsv1.AlertDetails{}}
	// Trust RX3: 30 alerts of dr-x, more than a page. Acknowledgement lists
	// them by id here; the one overdue alert (alert-x-29) comes last, so
	// only a sort across every page puts it first on page 1.
	for i := range 30 {
		id := fmt.Sprintf("alert-x-%02d", i)
		due := ts(time.Duration(i+1) * time.Hour)
		if i == 29 {
			due = ts(-time.Hour)
		}
		ack.alerts[id] = &ackv1.AlertState{AlertId: id, Tenant: "RX3", AccessionRef: fmt.Sprintf("HRL-X%02d", i), State: ackv1.State_STATE_NOTIFIED,
			Category: eventsv1.Category_CATEGORY_URGENT, RaisedAt: ts(-2 * time.Hour), StepRecipients: []string{"dr-x"},
			Clocks: &eventsv1.Clocks{AcknowledgeBy: due}}
	}
	for id := range ack.alerts {
		ack.details[id] = &eventsv1.AlertDetails{Accession: "ACC-" + id,
			Patient:    &eventsv1.Patient{NhsNumber: "9434765919", FamilyName: patientName, GivenName: "Jane", BirthDate: "1961-04-02"},
			Exam:       &eventsv1.Exam{Display: "CT chest", Modality: "CT"},
			Referrer:   &eventsv1.Clinician{DisplayName: "Dr A", Team: "Respiratory"},
			ReportText: reportText}
	}
	// Acknowledgement returns the details as the log holds them, the
	// patient data sealed with the trust's key; the console holds the key.
	patientKeys := sealing.Files{KeyringFile: filepath.Join(t.TempDir(), "keyring.json"), KEKFile: filepath.Join(t.TempDir(), "kek")}
	if err := sealing.GenerateKEKFile(patientKeys.KEKFile); err != nil {
		t.Fatal(err)
	}
	kek, err := sealing.LoadFileKEK(patientKeys.KEKFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, trust := range []string{"RX1", "RX2", "RX3"} {
		if _, err := sealing.Rotate(context.Background(), patientKeys.KeyringFile, kek, trust, now); err != nil {
			t.Fatal(err)
		}
	}
	ring, err := sealing.Open(patientKeys.KeyringFile, kek)
	if err != nil {
		t.Fatal(err)
	}
	for id, d := range ack.details {
		if err := ring.Seal(context.Background(), ack.alerts[id].GetTenant(), id, d); err != nil {
			t.Fatal(err)
		}
	}
	rules := newRulesPeer()
	grpcAddr := serveGRPC(t, ack, rules)
	addr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := console.DefaultConfig()
	cfg.Security = servicemain.DevelopmentInsecure()
	cfg.HTTPAddr, cfg.PublicURL = addr, "http://"+addr
	cfg.Acknowledgement.Addr, cfg.Rules.Addr = grpcAddr, grpcAddr
	oc := m.Config()
	cfg.OIDCIssuer, cfg.OIDCClientID, cfg.OIDCClientSecret = oc.Issuer, oc.ClientID, oc.ClientSecret
	cfg.SessionKey = "console-test-session-key-0123456789abcdef"
	keys, err := acklink.GenerateFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	links, err := acklink.LoadSigner(keys.PrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AckLinkPublicKeys = keys.PublicKeyFile
	cfg.Keys = patientKeys
	rep := &reports{}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := console.New(ctx, cfg, console.Deps{Logger: slog.New(slog.DiscardHandler), Reporting: rep})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &harness{url: "http://" + svc.Addr(), oidc: m, ack: ack, rules: rules, rep: rep, links: links, start: now, keyring: patientKeys.KeyringFile}
}

// browser starts Debian's chromium headless (skipped only when it is not
// installed and HERALD_REQUIRE_BROWSER is unset).
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("HERALD_REQUIRE_BROWSER") != "" {
			t.Fatal("chromium is not installed (apt-get install -y chromium)")
		}
		t.Skip("chromium is not installed (apt-get install -y chromium); set HERALD_REQUIRE_BROWSER=1 to fail instead")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// Generous: the machine is shared; this bounds a hung browser only.
	ctx, cancel3 := context.WithTimeout(ctx, browserTimeout())
	t.Cleanup(cancel3)
	return ctx
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func body(t *testing.T, ctx context.Context) string {
	t.Helper()
	return run(t, ctx, chromedp.Text("body"))
}

func path(t *testing.T, ctx context.Context) string {
	t.Helper()
	u, err := url.Parse(run(t, ctx, chromedp.Location()))
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

// signIn signs in as p (mockoidc answers the authorization request with the
// queued person) and waits for the landing page.
func (h *harness) signIn(t *testing.T, ctx context.Context, p person, target string) {
	t.Helper()
	h.oidc.QueueUser(p)
	do(t, ctx, chromedp.Navigate(h.url+target), waitFor("#sign-out"))
}

func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, click("#sign-out"), waitFor("#sign-in"))
}

var axeSource = func() string {
	b, err := os.ReadFile(filepath.Join("testdata", "axe.min.js"))
	if err != nil {
		panic("testdata/axe.min.js (make console-assets): " + err.Error())
	}
	return string(b)
}()

// check runs axe-core (WCAG 2.0/2.1/2.2 A and AA rules) on the page and
// fails on any violation, then saves screenshots at 375, 768 and 1280 px.
func check(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	do(t, ctx, chromedp.EmulateViewport(1280, 900))
	run(t, ctx, chromedp.Evaluate[bool](axeSource+";true"))
	out := run(t, ctx, chromedp.Evaluate[string](`axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a','wcag2aa','wcag21a','wcag21aa','wcag22aa']}})
		.then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))`,
		chromedp.EvalAwaitPromise))
	var violations []map[string]any
	if err := json.Unmarshal([]byte(out), &violations); err != nil {
		t.Fatalf("axe on %s: %v (%s)", name, err, out)
	}
	if len(violations) > 0 {
		t.Errorf("axe-core found WCAG 2.2 AA violations on page %s: %s", name, out)
	}
	dir := os.Getenv("HERALD_CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("artifacts", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, w := range widths {
		do(t, ctx, chromedp.EmulateViewport(w, 900))
		// Nothing widens the page beyond the screen (wide tables scroll
		// inside it): at 1400 px the old page's links were off screen.
		// Layout after a viewport change settles over a few frames (Chart.js
		// resizes its canvases from a ResizeObserver): measure after two
		// frames, and again while the page is still wider, for a while.
		settled := func() int64 {
			return run(t, ctx, chromedp.Evaluate[int64](`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(document.documentElement.scrollWidth))))`,
				chromedp.EvalAwaitPromise))
		}
		sw := settled()
		for i := 0; i < 30 && sw > w; i++ {
			time.Sleep(100 * time.Millisecond)
			sw = settled()
		}
		if sw > w {
			t.Errorf("page %s is %d px wide at a %d px screen", name, sw, w)
		}
		png := run(t, ctx, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, w)), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do(t, ctx, chromedp.EmulateViewport(1280, 900))
}

func TestPatientDetailsNeverBeforeSignIn(t *testing.T) {
	h := newHarness(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/alerts/alert-a1", "/worklist", "/failsafe", "/compliance", "/reports/rcr.csv", "/policy"} {
		resp, err := client.Get(h.url + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/auth/login?return=") {
			t.Errorf("GET %s before sign-in: %d to %q, want a redirect to the sign-in", p, resp.StatusCode, resp.Header.Get("Location"))
		}
		if strings.Contains(string(b), patientName) || strings.Contains(string(b), reportText) {
			t.Errorf("GET %s before sign-in shows patient data", p)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("GET %s: Cache-Control %q, want no-store", p, cc)
		}
	}
	if calls := h.ack.Calls(); len(calls) != 0 {
		t.Errorf("the console called acknowledgement before anyone signed in: %v", calls)
	}
	resp, err := client.Get(h.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, want := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q lacks script-src 'self' or frame-ancestors 'none'", csp)
	}
}

func TestConsoleInABrowser(t *testing.T) {
	h := newHarness(t)
	ctx := browser(t)
	clinician := person{sub: "dr-a", name: "Dr Alice Example", roles: []string{"RX1:clinician"}}

	t.Run("signed out page shows no patient data and passes axe", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/"), waitFor("#sign-in"))
		if b := body(t, ctx); strings.Contains(b, patientName) {
			t.Error("the sign-in page shows patient data")
		}
		check(t, ctx, "signin")
	})

	t.Run("the emailed link lands on the alert page after sign-in", func(t *testing.T) {
		tok, err := h.links.Sign(acklink.Claims{TokenID: "t1", AlertID: "alert-a1", PersonID: "dr-a",
			NotificationID: "n1", ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		h.signIn(t, ctx, clinician, "/ack/"+tok)
		if p := path(t, ctx); p != "/alerts/alert-a1" {
			t.Fatalf("landed on %s, want /alerts/alert-a1", p)
		}
		b := body(t, ctx)
		for _, want := range []string{patientName, "943 476 5919", reportText, "Acknowledge"} {
			if !strings.Contains(b, want) {
				t.Errorf("alert page lacks %q", want)
			}
		}
		if !slices.Contains(h.ack.Calls(), "MarkRead alert-a1 dr-a") {
			t.Errorf("the view was not recorded (MarkRead): %v", h.ack.Calls())
		}
		check(t, ctx, "alert")
	})

	t.Run("worklist puts the overdue alert first and acknowledges from it", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/worklist"), waitFor("#worklist"))
		rows := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#worklist tbody tr')].map(r => r.dataset.alert)`))
		if !slices.Equal(rows, []string{"alert-a1", "alert-a2"}) {
			t.Errorf("worklist rows %v, want the overdue alert-a1 first, then alert-a2 (and nothing of trust RX2 or the fail-safe queue)", rows)
		}
		check(t, ctx, "worklist")
		do(t, ctx, click(`#worklist a[href="/alerts/alert-a2"]`))
		do(t, ctx, waitFor("#acknowledge"),
			click("#acknowledge"), doneWith("acknowledged"))
		if !slices.Contains(h.ack.Calls(), "Acknowledge alert-a2 dr-a") {
			t.Errorf("no acknowledgement reached the service: %v", h.ack.Calls())
		}
		if s := run(t, ctx, chromedp.Text("#state")); s != "acknowledged" {
			t.Errorf("state after acknowledging: %q", s)
		}
		// Acknowledged: the page now offers to record the action.
		do(t, ctx, chromedp.SendKeys("#action", "Patient called back; chest drain booked"), click("#record-action"), doneWith("actioned"))
		if !slices.Contains(h.ack.Calls(), "RecordAction alert-a2 Patient called back; chest drain booked") {
			t.Errorf("no action reached the service: %v", h.ack.Calls())
		}
	})

	t.Run("decline needs a reason and re-routes", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/alerts/alert-a1"), waitFor("#acknowledge"),
			click("details summary"), waitFor("#decline"), click("#decline"), waitFor("#error-message"))
		if msg := run(t, ctx, chromedp.Text("#error-message")); !strings.Contains(msg, "Select why you are declining") {
			t.Errorf("decline without a reason: %q", msg)
		}
		check(t, ctx, "decline-error")
		do(t, ctx, chromedp.Navigate(h.url+"/alerts/alert-a1"), waitFor("#acknowledge"),
			click("details summary"), click("#reason-wrong_team"), chromedp.SendKeys("#note", "Belongs to respiratory"),
			click("#decline"), doneWith("declined"))
		if !slices.Contains(h.ack.Calls(), "Decline alert-a1 dr-a DECLINE_REASON_WRONG_TEAM Belongs to respiratory") {
			t.Errorf("no decline with its reason reached the service: %v", h.ack.Calls())
		}
		if s := run(t, ctx, chromedp.Text("#state")); s != "escalated" {
			t.Errorf("state after declining: %q, want escalated (re-routed)", s)
		}
		signOut(t, ctx)
		check(t, ctx, "signed-out")
	})

	t.Run("fail-safe officer sees what was tried and closes with a reason", func(t *testing.T) {
		h.signIn(t, ctx, person{sub: "fs-1", name: "Fiona Failsafe", roles: []string{"RX1:failsafe-officer"}}, "/failsafe")
		do(t, ctx, waitFor("#failsafe"))
		// The time in the queue (queued 2 h before the harness started) is
		// the page's clock's: whatever it read between these two instants.
		before := time.Since(h.start.Add(-2 * time.Hour))
		row := run(t, ctx, chromedp.Text(`#failsafe tr[data-alert="alert-a3"]`))
		after := time.Since(h.start.Add(-2 * time.Hour))
		// What was tried and who was contacted come from the alert's
		// timeline, which ListAlerts does not carry: 5 messages (two to
		// dr-a, one failed to dr-c, the fail-safe message and a reminder).
		for _, want := range []string{"HRL-A3", "5", "dr-a, dr-c, fs-1", "1, last"} {
			if !strings.Contains(row, want) {
				t.Errorf("fail-safe row %q lacks %q", row, want)
			}
		}
		if !strings.Contains(row, hoursMinutes(before)) && !strings.Contains(row, hoursMinutes(after)) {
			t.Errorf("fail-safe row %q lacks the time queued, %q or %q", row, hoursMinutes(before), hoursMinutes(after))
		}
		check(t, ctx, "failsafe")
		do(t, ctx, click(`#failsafe a[href="/alerts/alert-a3"]`), waitFor("#close"),
			click("#close-referrer-confirmed"), chromedp.SendKeys("#close_note", "Spoke to Dr A at 09:10"),
			click("#close"), doneWith("closed"))
		if !slices.Contains(h.ack.Calls(), "Close alert-a3 fs-1 referrer-confirmed: Spoke to Dr A at 09:10") {
			t.Errorf("no close with its reason reached the service: %v", h.ack.Calls())
		}
		signOut(t, ctx)
	})

	t.Run("safety lead sees compliance, the RCR audit, CSV and the policy dry run", func(t *testing.T) {
		h.signIn(t, ctx, person{sub: "sl-1", name: "Sam Safety", roles: []string{"RX1:safety-lead"}}, "/compliance?from=2026-11-02&to=2026-11-29")
		do(t, ctx, waitFor("#table-category"))
		cat := run(t, ctx, chromedp.Text("#table-category"))
		if !strings.Contains(cat, "95.0") || !strings.Contains(cat, "84.2") {
			t.Errorf("category table %q lacks 95.0 (38/40) and 84.2 (101/120)", cat)
		}
		q := h.rep.asked[len(h.rep.asked)-1]
		if q.Trust != "RX1" || q.From.Format(time.DateOnly) != "2026-11-02" || q.To.Format(time.DateOnly) != "2026-11-30" {
			t.Errorf("reporting asked %+v, want RX1 [2026-11-02, 2026-11-30)", q)
		}
		// Chart.js drew each chart from its table (the charts are an
		// enhancement; the tables are the accessible form).
		run(t, ctx, chromedp.Poll[bool](`typeof Chart !== 'undefined' && Chart.getChart('chart-trend') !== undefined && Chart.getChart('chart-category') !== undefined`))
		check(t, ctx, "compliance")
		do(t, ctx, chromedp.Navigate(h.url+"/reports/rcr?from=2026-11-02&to=2026-11-29"), waitFor("#rcr"))
		check(t, ctx, "rcr")
		csv := run(t, ctx, chromedp.Evaluate[string](`fetch(document.getElementById('csv').href).then(r => r.text())`, chromedp.EvalAwaitPromise))
		if !strings.Contains(csv, "RX1,2026-11-02,2026-11-29,Critical,60,38,40,95.0,100.0,false") {
			t.Errorf("CSV export:\n%s", csv)
		}
		do(t, ctx, chromedp.Navigate(h.url+"/policy?category=critical&at=2026-12-07T03:00"), waitFor("#plan"))
		plan := run(t, ctx, chromedp.Text("#plan"))
		if !strings.Contains(plan, "dr-oncall") || !strings.Contains(plan, "consultant-radiologist") || !strings.Contains(plan, "03:15") {
			t.Errorf("policy plan %q", plan)
		}
		check(t, ctx, "policy")
		signOut(t, ctx)
	})

	t.Run("the worklist pages in acknowledgement's deadline order: overdue first, then by deadline", func(t *testing.T) {
		h.signIn(t, ctx, person{sub: "dr-x", name: "Dr Xavier Example", roles: []string{"RX3:clinician"}}, "/worklist")
		do(t, ctx, waitFor("#worklist"))
		rows := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#worklist tbody tr')].map(r => r.dataset.alert)`))
		if len(rows) != 25 || rows[0] != "alert-x-29" || rows[1] != "alert-x-00" || rows[24] != "alert-x-23" {
			t.Errorf("page 1 of the worklist: %v, want alert-x-29 (overdue) then alert-x-00 ... alert-x-23 by deadline", rows)
		}
		check(t, ctx, "worklist-paged")
		do(t, ctx, click("#next-page"), waitJS(`location.search.includes('n=2') && document.querySelector('#worklist') !== null`))
		rows = run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#worklist tbody tr')].map(r => r.dataset.alert)`))
		if !slices.Equal(rows, []string{"alert-x-24", "alert-x-25", "alert-x-26", "alert-x-27", "alert-x-28"}) {
			t.Errorf("page 2 of the worklist: %v", rows)
		}
		signOut(t, ctx)
	})

	t.Run("search and the governance timeline of an alert, with its export", func(t *testing.T) {
		h.signIn(t, ctx, clinician, "/search")
		do(t, ctx, waitFor("#search-form"), chromedp.SendKeys("#accession", "ACC-H1"), click("#search"), waitFor("#results"))
		rows := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#results tbody tr')].map(r => r.dataset.alert)`))
		if !slices.Equal(rows, []string{"hist-1"}) {
			t.Errorf("search by accession in RX1: %v, want only hist-1 (hist-b of RX2 has the same accession)", rows)
		}
		if q := h.rep.searched[len(h.rep.searched)-1]; q.Trust != "RX1" || q.Accession != "ACC-H1" {
			t.Errorf("the store was asked %+v", q)
		}
		check(t, ctx, "search")
		do(t, ctx, goTo("/search?trust=RX1&from=2026-11-05&to=2026-11-01"), waitFor("#error-message"))
		if msg := run(t, ctx, chromedp.Text("#error-message")); !strings.Contains(msg, "end date must be") {
			t.Errorf("a reversed date range: %q", msg)
		}
		do(t, ctx, goTo("/search?trust=RX1&reference=hrl-h1&from=2026-11-03&to=2026-11-03"), waitFor("#results"),
			click(`#results a[href^="/alerts/hist-1/timeline"]`), waitFor("#timeline"))
		var types []string
		do(t, ctx, waitFor("#timeline tbody tr"))
		types = run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#timeline tbody tr')].map(r => r.dataset.event)`))
		if !slices.Equal(types, []string{"AlertRaised", "AlertRouted", "NotificationSent", "NotificationDelivered", "NotificationFailed", "AlertAcknowledged", "AlertClosed"}) {
			t.Errorf("timeline events %v, want every event in log order", types)
		}
		tl := run(t, ctx, chromedp.Text("#timeline"))
		for _, want := range []string{"Dr Alice Example, clinician", "signed in with cis2, id dr-a", "delivered", "failed to dr-c by EMAIL", "Fiona Failsafe, failsafe-officer", "v7"} {
			if !strings.Contains(tl, want) {
				t.Errorf("timeline lacks %q:\n%s", want, tl)
			}
		}
		if v := run(t, ctx, chromedp.Text("#policy-version")); !strings.Contains(v, "RX1-policy version v7") {
			t.Errorf("policy in force: %q", v)
		}
		if b := body(t, ctx); strings.Contains(b, patientName) || strings.Contains(b, reportText) {
			t.Error("the governance timeline shows patient data")
		}
		check(t, ctx, "timeline")
		exp := run(t, ctx, chromedp.Evaluate[string](`fetch(document.getElementById('export-json').href).then(r => r.text())`, chromedp.EvalAwaitPromise))
		var doc struct {
			AlertID string `json:"alert_id"`
			Trust   string `json:"trust"`
			Events  []struct {
				Type, Delivery string
				Name           string `json:"actor_name"`
				Provider       string `json:"actor_identity_provider"`
			} `json:"events"`
		}
		if err := json.Unmarshal([]byte(exp), &doc); err != nil || doc.AlertID != "hist-1" || doc.Trust != "RX1" || len(doc.Events) != 7 ||
			doc.Events[5].Name != "Dr Alice Example" || doc.Events[5].Provider != "cis2" || doc.Events[3].Delivery != "delivered" {
			t.Errorf("the JSON export: %v\n%s", err, exp)
		}
		// The evidential record is for safety leads and fail-safe officers.
		if run(t, ctx, chromedp.Evaluate[bool](`document.querySelector('#evidence-json') !== null`)) {
			t.Error("a clinician is offered the evidential record")
		}
		if code := run(t, ctx, chromedp.Evaluate[int](`fetch('/alerts/hist-1/evidence.json').then(r => r.status)`, chromedp.EvalAwaitPromise)); code != http.StatusForbidden {
			t.Errorf("a clinician's evidence.json: %d, want 403", code)
		}
		signOut(t, ctx)
	})

	t.Run("the safety lead downloads the evidential record from the timeline", func(t *testing.T) {
		h.signIn(t, ctx, person{sub: "sl-1", name: "Sam Safety", roles: []string{"RX1:safety-lead"}}, "/alerts/hist-1/timeline?trust=RX1")
		do(t, ctx, waitFor("#evidence-json"))
		check(t, ctx, "timeline-evidence")
		exp := run(t, ctx, chromedp.Evaluate[string](`fetch(document.getElementById('evidence-json').href).then(r => r.text())`, chromedp.EvalAwaitPromise))
		var doc struct {
			AlertID string `json:"alert_id"`
			Proof   struct {
				Verified bool `json:"chain_verified"`
			} `json:"proof"`
		}
		if err := json.Unmarshal([]byte(exp), &doc); err != nil || doc.AlertID != "hist-1" || !doc.Proof.Verified {
			t.Errorf("the evidential record (JSON): %v\n%s", err, exp)
		}
		do(t, ctx, click("#evidence-html"), waitFor("#evidence-title"))
		if title := run(t, ctx, chromedp.Text("#evidence-title")); !strings.Contains(title, "hist-1") {
			t.Errorf("the printable evidential record: %q", title)
		}
		// Through acknowledgement's API with the person's own token.
		n := 0
		for _, c := range h.ack.Calls() {
			if c == "ExportAudit hist-1 sl-1" {
				n++
			}
		}
		if n != 2 {
			t.Errorf("ExportAudit as sl-1 called %d times, want 2 (JSON and page): %v", n, h.ack.Calls())
		}
		do(t, ctx, goTo("/compliance"))
		signOut(t, ctx)
	})

	t.Run("pending bundle approvals: dry run, the two-person rule, approve", func(t *testing.T) {
		h.signIn(t, ctx, person{sub: "pa-1", name: "Priya Policy", roles: []string{"RX1:policy-admin"}}, "/policy")
		do(t, ctx, waitFor("#approvals"))
		card := run(t, ctx, chromedp.Text(".herald-proposal"))
		for _, want := range []string{"RX1-policy version v8", "Priya Policy (policy-admin)", pendingHash, "You proposed this bundle"} {
			if !strings.Contains(card, want) {
				t.Errorf("the pending proposal lacks %q: %q", want, card)
			}
		}
		do(t, ctx, click(".herald-dryrun-link"), waitFor("#dryrun"))
		if dr := run(t, ctx, chromedp.Text("#dryrun")); !strings.Contains(dr, "1 of 12") || !strings.Contains(dr, "dr-oncall -> consultant-radiologist") {
			t.Errorf("dry run: %q", dr)
		}
		check(t, ctx, "policy-approvals")
		do(t, ctx, click("#approve-"+pendingHash), waitFor("#review-problem"))
		if msg := run(t, ctx, chromedp.Text("#review-problem")); !strings.Contains(msg, "two-person rule") || !strings.Contains(msg, "second policy administrator") {
			t.Errorf("the proposer's approval: %q, want the two-person rule explained", msg)
		}
		check(t, ctx, "policy-two-person")
		if r := h.rules.Reviews(); len(r) != 0 {
			t.Errorf("the proposer's approval was recorded: %v", r)
		}
		signOut(t, ctx)
		h.signIn(t, ctx, person{sub: "pa-2", name: "Paul Second", roles: []string{"RX1:policy-admin"}}, "/policy")
		do(t, ctx, waitFor("#approve-"+pendingHash))
		if b := run(t, ctx, chromedp.Text(".herald-proposal")); strings.Contains(b, "You proposed this bundle") {
			t.Error("a second administrator is told they proposed the bundle")
		}
		do(t, ctx, click("#reject-"+pendingHash), waitFor("#review-problem"))
		if msg := run(t, ctx, chromedp.Text("#review-problem")); !strings.Contains(msg, "Say why you are rejecting") {
			t.Errorf("reject without a reason: %q", msg)
		}
		do(t, ctx, click("#approve-"+pendingHash), waitFor("#review-done"))
		if r := h.rules.Reviews(); !slices.Equal(r, []string{"approved " + pendingHash + " by pa-2"}) {
			t.Errorf("reviews recorded by rules: %v", r)
		}
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#approvals-none') !== null`)); err != nil {
			t.Error(err)
		}
		signOut(t, ctx)
	})

	t.Run("a person of trust B sees nothing of trust A", func(t *testing.T) {
		h.signIn(t, ctx, person{sub: "dr-b", name: "Dr Bob Other", roles: []string{"RX2:clinician"}}, "/worklist")
		rows := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#worklist tbody tr')].map(r => r.dataset.alert)`))
		if !slices.Equal(rows, []string{"alert-b1"}) {
			t.Errorf("trust B worklist %v, want only alert-b1", rows)
		}
		for _, p := range []string{"/alerts/alert-a1", "/worklist?trust=RX1", "/failsafe?trust=RX1", "/compliance?trust=RX1",
			"/search?trust=RX1&accession=ACC-H1", "/alerts/hist-1/timeline", "/alerts/hist-1/timeline?trust=RX1"} {
			do(t, ctx, goTo(p))
			b := body(t, ctx)
			if strings.Contains(b, patientName) || strings.Contains(b, "HRL-A") {
				t.Errorf("trust B person sees trust A's data on %s", p)
			}
			if !strings.Contains(b, "There is no alert here that you can see") && !strings.Contains(b, "Your role does not include this page") {
				t.Errorf("%s for a trust B person: %q", p, b)
			}
		}
		if slices.Contains(h.ack.Calls(), "MarkRead alert-a1 dr-b") {
			t.Error("a trust B person's view of trust A's alert was recorded as a read")
		}
		signOut(t, ctx)
	})

	t.Run("after the trust's key is destroyed the alert page says so and shows no patient data", func(t *testing.T) {
		h.signIn(t, ctx, clinician, "/alerts/alert-a1")
		do(t, ctx, waitFor("#patient"))
		if _, err := sealing.Destroy(h.keyring, "RX1", "", "records-manager", time.Now()); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, chromedp.Navigate(h.url+"/alerts/alert-a1"), waitFor("#no-details"))
		b := body(t, ctx)
		if strings.Contains(b, patientName) || strings.Contains(b, reportText) || strings.Contains(b, "943 476 5919") {
			t.Error("the alert page shows patient data after the trust's key was destroyed")
		}
		if !strings.Contains(b, "destroyed at the trust's request") {
			t.Errorf("the alert page does not say the details were destroyed: %q", b)
		}
		check(t, ctx, "alert-shredded")
		signOut(t, ctx)
	})

	for i, b := range h.ack.Bearers() {
		if !strings.HasPrefix(b, "Bearer ") || len(b) < len("Bearer ")+20 {
			t.Errorf("call %d (%s) carried no bearer token: %q", i, h.ack.Calls()[i], b)
		}
	}
}

// browserTimeout bounds the whole browser session (HERALD_BROWSER_TIMEOUT,
// default 5 minutes: generous on a shared machine; it stops a hung browser).
func browserTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("HERALD_BROWSER_TIMEOUT")); err == nil {
		return d
	}
	return 5 * time.Minute
}

// click clicks the element sel in the page (element.click(): no mouse
// coordinates, so a layout still settling after a viewport change cannot
// make it miss). The next wait holds until the new page shows.
func click(sel string) chromedp.Action[chromedp.Void] {
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) { return false } setTimeout(() => e.click(), 0); return true })()`, sel)
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := waitFor(sel)(ctx, t); err != nil {
			return chromedp.Void{}, err
		}
		ok, err := chromedp.Evaluate[bool](js)(ctx, t)
		if err == nil && !ok {
			err = fmt.Errorf("no element %s to click", sel)
		}
		return chromedp.Void{}, err
	}
}

// goTo loads path (answered with an error status too: chromedp's Navigate
// waits on a successful load) and waits until the browser shows it.
func goTo(path string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := chromedp.Evaluate[bool](fmt.Sprintf(`setTimeout(() => { location.href = %q }, 0); true`, path))(ctx, t); err != nil {
			return chromedp.Void{}, err
		}
		return waitJS(fmt.Sprintf(`location.pathname + location.search === %q && document.readyState === 'complete' && document.querySelector('main') !== null`, path))(ctx, t)
	}
}

// doneWith waits for the confirmation of a command ("You have <word> this
// alert"), not the one of an earlier command still on the page.
func doneWith(word string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		return waitJS(fmt.Sprintf(`(document.getElementById('done')?.textContent ?? '').includes(%q)`, word))(ctx, t)
	}
}

// waitJS evaluates expr until it is true, through navigations (an
// evaluation cut by a page load is retried), until ctx ends.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			ok, err := chromedp.Evaluate[bool](expr)(ctx, t)
			if err == nil && ok {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("waiting for %s: %w (last error: %v)", expr, ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// waitFor waits until the page is loaded and shows an element sel.
func waitFor(sel string) chromedp.Action[chromedp.Void] {
	return waitJS(fmt.Sprintf(`document.readyState === 'complete' && document.querySelector(%q) !== null`, sel))
}

// hoursMinutes is how the pages write a duration of hours (web's ago).
func hoursMinutes(d time.Duration) string {
	d = d.Round(time.Minute)
	return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
}
