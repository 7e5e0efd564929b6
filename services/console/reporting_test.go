package console_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/freeport"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/console"
)

// reportAlert is one alert the test raises on the log, with its known
// acknowledgement time.
type reportAlert struct {
	id, trust, team string
	category        eventsv1.Category
	raised          time.Time
	target          time.Duration // acknowledge-by = raised + target
	ack             time.Duration // 0: never acknowledged
	breach          bool          // an acknowledge-clock SLABreached
	failsafe        bool
}

func (a reportAlert) events() []*eventsv1.Event {
	var out []*eventsv1.Event
	add := func(at time.Time, e *eventsv1.Event) {
		e.EventId = fmt.Sprintf("%s-e%d", a.id, len(out)+1)
		e.AlertId, e.Tenant, e.OccurredAt, e.SchemaVersion = a.id, a.trust, timestamppb.New(at), 1
		out = append(out, e)
	}
	due := a.raised.Add(a.target)
	add(a.raised, &eventsv1.Event{Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{
		Details: &eventsv1.AlertDetails{Accession: "ACC-" + a.id, Referrer: &eventsv1.Clinician{Id: "ref-" + a.team, Team: a.team}}}}})
	policy := &eventsv1.PolicyRef{PolicyId: "pol-" + a.trust, Version: "1"}
	add(a.raised.Add(time.Second), &eventsv1.Event{Policy: policy, Payload: &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{
		Category: a.category, Clocks: &eventsv1.Clocks{StartedAt: timestamppb.New(a.raised), AcknowledgeBy: timestamppb.New(due)},
		Policy: &eventsv1.EscalationPolicy{Ref: policy}}}})
	if a.breach {
		add(due, &eventsv1.Event{Payload: &eventsv1.Event_SlaBreached{SlaBreached: &eventsv1.SLABreached{
			Clock: eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE, Deadline: timestamppb.New(due)}}})
	}
	if a.failsafe {
		add(due.Add(time.Minute), &eventsv1.Event{Payload: &eventsv1.Event_FailsafeQueued{FailsafeQueued: &eventsv1.FailsafeQueued{Queue: "q"}}})
	}
	if a.ack > 0 {
		add(a.raised.Add(a.ack), &eventsv1.Event{Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{
			Actor: &eventsv1.Actor{PersonId: "dr-" + a.team, DisplayName: "Dr " + a.team, Role: "clinician", IdentityProvider: "cis2"}}}})
	}
	slices.SortStableFunc(out, func(x, y *eventsv1.Event) int { return x.GetOccurredAt().AsTime().Compare(y.GetOccurredAt().AsTime()) })
	return out
}

// figures are one category's expected figures, computed here from the
// alerts (not by the store's SQL).
type figures struct {
	due, inTime, breaches int
	median, p90           time.Duration
}

// percentile is the continuous percentile (linear interpolation between
// the closest ranks), as PostgreSQL's percentile_cont defines it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	pos := p * float64(len(sorted)-1)
	lo, hi := int(math.Floor(pos)), int(math.Ceil(pos))
	return sorted[lo] + time.Duration(float64(sorted[hi]-sorted[lo])*(pos-float64(lo)))
}

func expectedFigures(alerts []reportAlert, trust string, cat eventsv1.Category, now time.Time) figures {
	var f figures
	var acks []time.Duration
	for _, a := range alerts {
		if a.trust != trust || a.category != cat {
			continue
		}
		due := a.raised.Add(a.target)
		if a.ack > 0 || !due.After(now) {
			f.due++
			if a.ack > 0 && !a.raised.Add(a.ack).After(due) {
				f.inTime++
			}
		}
		if a.ack > 0 {
			acks = append(acks, a.ack)
		}
		if a.breach {
			f.breaches++
		}
	}
	slices.Sort(acks)
	f.median, f.p90 = percentile(acks, 0.5), percentile(acks, 0.9)
	return f
}

// TestCompliancePageShowsTheReportingStoresFigures starts the console's
// composition root with a reporting store (real PostgreSQL) reading the
// real Kafka log, appends the events of alerts with known acknowledgement
// times, and checks that the safety lead's compliance page and RCR export
// show the figures computed here from those times.
func TestCompliancePageShowsTheReportingStoresFigures(t *testing.T) {
	now := time.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	base := today.Add(-3 * 24 * time.Hour).Add(9 * time.Hour)
	crit, urg := eventsv1.Category_CATEGORY_CRITICAL, eventsv1.Category_CATEGORY_URGENT
	alerts := []reportAlert{
		{id: "r1", trust: "RX1", team: "resp", category: crit, raised: base, target: time.Hour, ack: 12 * time.Minute},
		{id: "r2", trust: "RX1", team: "resp", category: crit, raised: base.Add(time.Hour), target: time.Hour, ack: 30 * time.Minute},
		{id: "r3", trust: "RX1", team: "cardio", category: crit, raised: base.Add(2 * time.Hour), target: time.Hour, ack: 95 * time.Minute, breach: true},
		{id: "r4", trust: "RX1", team: "cardio", category: crit, raised: base.Add(3 * time.Hour), target: time.Hour, breach: true, failsafe: true},
		{id: "r5", trust: "RX1", team: "resp", category: urg, raised: base.Add(4 * time.Hour), target: 24 * time.Hour, ack: 3 * time.Hour},
		{id: "r6", trust: "RX1", team: "resp", category: urg, raised: base.Add(5 * time.Hour), target: 24 * time.Hour, ack: 25 * time.Hour, breach: true},
		// Pending: raised now, its deadline a day ahead: not due.
		{id: "r7", trust: "RX1", team: "resp", category: urg, raised: now.Add(-time.Minute), target: 24 * time.Hour},
		// Another trust's alerts never count.
		{id: "o1", trust: "RX2", team: "resp", category: crit, raised: base, target: time.Hour, ack: 2 * time.Hour, breach: true},
		{id: "o2", trust: "RX2", team: "resp", category: crit, raised: base, target: time.Hour, ack: time.Minute},
	}

	logCfg := eventlog.DefaultConfig()
	logCfg.Brokers = testinfra.KafkaBrokers(t)
	logCfg.EventsTopic = testinfra.NewTopic(t, "console-reporting-events", 2)
	logCfg.DLQTopic = testinfra.NewTopic(t, "console-reporting-dlq", 1)

	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	grpcAddr := serveGRPC(t, &ackPeer{alerts: map[string]*ackv1.AlertState{}}, newRulesPeer())
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
	cfg.PostgresURL = testinfra.NewPostgres(t)
	cfg.Log = logCfg
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := console.New(ctx, cfg, console.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	w := eventlog.NewWriter(logCfg, "console-reporting-test", telemetry.Nop("console-reporting-test"))
	defer w.Close()
	for _, a := range alerts {
		if err := w.Append(context.Background(), a.events()...); err != nil {
			t.Fatalf("append %s: %v", a.id, err)
		}
	}

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: time.Minute}
	m.QueueUser(person{sub: "sl-1", name: "Sam Safety", roles: []string{"RX1:safety-lead"}})
	period := "trust=RX1&from=" + today.Add(-7*24*time.Hour).Format(time.DateOnly) + "&to=" + today.Format(time.DateOnly)
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
		}
		return string(b)
	}

	crows := expectedFigures(alerts, "RX1", crit, now)
	urows := expectedFigures(alerts, "RX1", urg, now)
	want := map[string][]string{}
	for name, f := range map[string]figures{"critical": crows, "urgent": urows} {
		want[name] = []string{fmt.Sprint(f.due), fmt.Sprint(f.inTime), fmt.Sprintf("%.1f", 100*float64(f.inTime)/float64(f.due)),
			fmt.Sprintf("%.0f", f.median.Minutes()), fmt.Sprintf("%.0f", f.p90.Minutes()), fmt.Sprint(f.breaches)}
	}
	// The projector catches up in its own time: wait for the page to
	// show every alert's acknowledgement (generous deadline, loaded machine).
	var page string
	var got map[string][]string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		page = get("/compliance?" + period)
		got = categoryRows(page)
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("compliance by category (alerts due, in target, %%, median, p90, breaches):\n got %v\nwant %v", got, want)
	}
	for _, s := range []string{`<strong id="failsafe-count">1</strong>`, `<strong id="quarantine-count">0</strong>`} {
		if !strings.Contains(page, s) {
			t.Errorf("compliance page lacks %s", s)
		}
	}
	if strings.Contains(page, "not configured") {
		t.Error("compliance page says reporting is not configured")
	}

	recs, err := csv.NewReader(strings.NewReader(get("/reports/rcr.csv?" + period))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	rcr := map[string][2]string{}
	for _, r := range recs[1:] {
		rcr[r[3]] = [2]string{r[5], r[6]}
		// The store knows neither the target (it depends on the policy in
		// force at each routing) nor a standard: the export leaves them
		// empty rather than saying 0 and "not met".
		if r[4] != "" || r[8] != "" || r[9] != "" {
			t.Errorf("RCR CSV row %v: target, standard and met should be empty", r)
		}
	}
	wantRCR := map[string][2]string{
		"CRITICAL": {fmt.Sprint(crows.inTime), fmt.Sprint(crows.due)},
		"URGENT":   {fmt.Sprint(urows.inTime), fmt.Sprint(urows.due)},
	}
	if fmt.Sprint(rcr) != fmt.Sprint(wantRCR) {
		t.Errorf("RCR CSV numerator/denominator by category:\n got %v\nwant %v\n%v", rcr, wantRCR, recs)
	}
}

// TestSearchAndGovernanceTimelineFromTheReportingStore: through the real
// PostgreSQL store (fed from the real Kafka log), a person finds an alert
// of their trust by accession and by reference, reads its governance
// timeline and downloads it as JSON; another trust's alert with the same
// accession is never found.
func TestSearchAndGovernanceTimelineFromTheReportingStore(t *testing.T) {
	now := time.Now().UTC()
	crit := eventsv1.Category_CATEGORY_CRITICAL
	alerts := []reportAlert{
		{id: "s1", trust: "RX1", team: "resp", category: crit, raised: now.Add(-2 * time.Hour), target: time.Hour, ack: 10 * time.Minute},
		{id: "s2", trust: "RX2", team: "resp", category: crit, raised: now.Add(-2 * time.Hour), target: time.Hour, ack: 5 * time.Minute},
	}
	h := startWithStore(t, alerts)
	h.oidc.QueueUser(person{sub: "dr-a", name: "Dr Alice", roles: []string{"RX1:clinician"}})
	// Reference "HRL-..." of s1 under the test's reference key.
	ref, err := alertref.New([]byte(testReferenceKey))
	if err != nil {
		t.Fatal(err)
	}
	var page string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		page = h.get(t, "/search?trust=RX1&accession=ACC-s1")
		if strings.Contains(page, `data-alert="s1"`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(page, `data-alert="s1"`) {
		t.Fatalf("search by accession did not find s1:\n%s", page)
	}
	if p := h.get(t, "/search?trust=RX1&reference="+strings.ToLower(ref.Ref("s1"))); !strings.Contains(p, `data-alert="s1"`) {
		t.Errorf("search by reference %s did not find s1", ref.Ref("s1"))
	}
	// Wait for the acknowledgement to be projected too.
	var doc struct {
		Trust  string `json:"trust"`
		Events []struct {
			Type          string `json:"type"`
			ActorID       string `json:"actor_id"`
			Name          string `json:"actor_name"`
			Role          string `json:"actor_role"`
			Provider      string `json:"actor_identity_provider"`
			PolicyVersion string `json:"policy_version"`
		} `json:"events"`
	}
	for {
		doc.Events = nil
		if err := json.Unmarshal([]byte(h.get(t, "/alerts/s1/timeline.json?trust=RX1")), &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Events) == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if doc.Trust != "RX1" || len(doc.Events) != 3 || doc.Events[0].Type != "AlertRaised" || doc.Events[1].PolicyVersion != "1" {
		t.Fatalf("timeline export: %+v", doc)
	}
	if a := doc.Events[2]; a.Type != "AlertAcknowledged" || a.ActorID != "dr-resp" || a.Name != "Dr resp" || a.Role != "clinician" || a.Provider != "cis2" {
		t.Errorf("the acknowledgement's who: %+v", a)
	}
	tl := h.get(t, "/alerts/s1/timeline")
	for _, want := range []string{"Dr resp, clinician", "signed in with cis2", "pol-RX1 version 1"} {
		if !strings.Contains(tl, want) {
			t.Errorf("the governance timeline page lacks %q", want)
		}
	}
	// RX2's alert has the same kind of accession and is never shown.
	if p := h.get(t, "/search?trust=RX1&accession=ACC-s2"); strings.Contains(p, `data-alert="s2"`) {
		t.Error("a person of RX1 found RX2's alert")
	}
	if code := h.status(t, "/alerts/s2/timeline"); code != http.StatusNotFound {
		t.Errorf("RX2's governance timeline for a person of RX1: %d, want 404", code)
	}
}

const testReferenceKey = "console-test-reference-key-0123456789abcdef"

// storeHarness is a console with a reporting store and a signed-in client.
type storeHarness struct {
	oidc   *mockoidc.MockOIDC
	addr   string
	client *http.Client
}

func (h storeHarness) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := h.client.Get("http://" + h.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
	}
	return string(b)
}

func (h storeHarness) status(t *testing.T, path string) int {
	t.Helper()
	resp, err := h.client.Get("http://" + h.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startWithStore starts the console with a reporting store (real
// PostgreSQL, real Kafka) and appends the alerts' events to the log.
func startWithStore(t *testing.T, alerts []reportAlert) storeHarness {
	t.Helper()
	logCfg := eventlog.DefaultConfig()
	logCfg.Brokers = testinfra.KafkaBrokers(t)
	logCfg.EventsTopic = testinfra.NewTopic(t, "console-search-events", 2)
	logCfg.DLQTopic = testinfra.NewTopic(t, "console-search-dlq", 1)
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	grpcAddr := serveGRPC(t, &ackPeer{alerts: map[string]*ackv1.AlertState{}}, newRulesPeer())
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
	cfg.PostgresURL = testinfra.NewPostgres(t)
	cfg.Log = logCfg
	cfg.ReferenceKey = testReferenceKey
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := console.New(ctx, cfg, console.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	w := eventlog.NewWriter(logCfg, "console-search-test", telemetry.Nop("console-search-test"))
	t.Cleanup(func() { _ = w.Close() })
	for _, a := range alerts {
		if err := w.Append(context.Background(), a.events()...); err != nil {
			t.Fatalf("append %s: %v", a.id, err)
		}
	}
	jar, _ := cookiejar.New(nil)
	return storeHarness{oidc: m, addr: addr, client: &http.Client{Jar: jar, Timeout: time.Minute}}
}

var rowRE = regexp.MustCompile(`(?s)<tr class="nhsuk-table__row">\s*<th scope="row" class="nhsuk-table__cell">([^<]*)</th>(.*?)</tr>`)
var cellRE = regexp.MustCompile(`<td[^>]*>([^<]*)</td>`)

// categoryRows reads the "By category" table: group -> its cells.
func categoryRows(page string) map[string][]string {
	i := strings.Index(page, `id="table-category"`)
	if i < 0 {
		return nil
	}
	table := page[i:]
	table = table[:strings.Index(table, "</table>")]
	out := map[string][]string{}
	for _, m := range rowRE.FindAllStringSubmatch(table, -1) {
		var cells []string
		for _, c := range cellRE.FindAllStringSubmatch(m[2], -1) {
			cells = append(cells, html.UnescapeString(strings.TrimSpace(c[1])))
		}
		out[strings.ToLower(strings.TrimSpace(m[1]))] = cells
	}
	return out
}
