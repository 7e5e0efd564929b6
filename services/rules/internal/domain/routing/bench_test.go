package routing_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
	"github.com/herald-health/herald/services/rules/internal/domain/routing"
)

// Size of the generated network: per trust.
const (
	benchTrusts = 8
	benchRules  = 50
	benchPeople = 200
	benchTeams  = 20
	benchRotas  = 12
)

func benchTenant(i int) string { return fmt.Sprintf("R%02d", i) }

// genBundle writes a realistic bundle for trust i of the network: 50 CEL
// rules over every attribute, 200 people with GMC numbers and two or three
// contact points, 20 teams, 12 rotas (weekday/weekend day and night shifts
// with overrides), and six four-step policies that use every target kind.
func genBundle(i int) []bundle.File {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	tenant := benchTenant(i)
	next := benchTenant((i + 1) % benchTrusts)
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("tenant: %s\nversion: \"bench-1\"\nname: Generated Trust %d\n", tenant, i)
	w("failsafe: {officer: p%03d, queue: %s-failsafe, policy: quarantine, default_category: URGENT}\n", 0, tenant)
	w("network: {failsafe_team: network, tenant: %s}\n", benchTenant(0))
	w(`categories:
  - {code: CRITICAL, rank: 1, clocks: {communicate: 1h, acknowledge: 1h, action: 4h}, policy: critical}
  - {code: URGENT, rank: 2, clocks: {communicate: 8h, acknowledge: 24h, action: 72h}, policy: urgent}
  - {code: CANCER, rank: 3, clocks: {communicate: 2d, acknowledge: 3d, action: 14d}, policy: cancer}
  - {code: SIGNIFICANT_UNEXPECTED, rank: 4, clocks: {communicate: 3d, acknowledge: 7d, action: 14d}, policy: significant}
  - {code: STROKE, local: true, rank: 5, clocks: {communicate: 30m, acknowledge: 1h}, policy: stroke}
  - {code: ED_DISCREPANCY, local: true, rank: 6, clocks: {acknowledge: 48h}, policy: significant}
`)
	cats := []string{"CRITICAL", "URGENT", "CANCER", "SIGNIFICANT_UNEXPECTED", "STROKE", "ED_DISCREPANCY"}
	mods := []string{"CT", "MR", "XR", "US", "NM", "MG"}
	classes := []string{"E", "I", "O"}
	phrases := []string{"pneumothorax", "embolism", "dissection", "malignan", "fracture", "haemorrhage", "abscess", "obstruction"}
	w("rules:\n")
	for k := range benchRules {
		var cond string
		switch k % 10 {
		case 0:
			cond = fmt.Sprintf(`"AA" in abnormal_flags && modality == "%s" && patient_class == "%s"`, mods[r.IntN(len(mods))], classes[r.IntN(3)])
		case 1:
			cond = fmt.Sprintf(`trigger_phrases.exists(p, p.contains("%s"))`, phrases[r.IntN(len(phrases))])
		case 2:
			cond = fmt.Sprintf(`flag == "SIGNIFICANT_UNEXPECTED" && patient_class == "%s" && (hour >= %d || hour < 7 || weekend)`, classes[r.IntN(3)], 18+r.IntN(4))
		case 3:
			cond = fmt.Sprintf(`exam_code.startsWith("C%c") && modality in ["CT", "MR"]`, 'A'+rune(r.IntN(26)))
		case 4:
			cond = fmt.Sprintf(`location.startsWith("%s%02d") && patient_class == "E"`, tenant, r.IntN(5))
		case 5:
			cond = fmt.Sprintf(`flag_code == "X%02d"`, k)
		case 6:
			cond = fmt.Sprintf(`referrer_team == "T%02d" && ("HH" in abnormal_flags || "LL" in abnormal_flags)`, r.IntN(benchTeams))
		case 7:
			cond = fmt.Sprintf(`weekday == %d && hour >= 8 && hour < 18 && modality == "%s"`, 1+r.IntN(7), mods[r.IntN(len(mods))])
		case 8:
			cond = fmt.Sprintf(`size(trigger_phrases) > 1 && source == "HL7V2" && report_status == "%s"`, []string{"FINAL", "CORRECTED"}[r.IntN(2)])
		default:
			cond = fmt.Sprintf(`amended && flag == "%s"`, cats[r.IntN(4)])
		}
		w("  - id: rule-%02d\n    when: '%s'\n    category: %s\n    reason: generated rule %d\n", k, cond, cats[r.IntN(len(cats))], k)
	}
	steps := func(first string) string {
		return fmt.Sprintf(`      - {targets: [%s], timeout: 10m, repeats: 1, channels: [sms, email]}
      - {targets: [{kind: oncall, ref: rota-%02d}, {kind: referrer_team}], timeout: 10m, repeats: 1, channels: [sms, email]}
      - {targets: [{kind: oncall, ref: rota-%02d}, {kind: other_trust_role, tenant: %s, ref: rota-00}], timeout: 15m, channels: [sms, teams, email]}
      - {targets: [{kind: failsafe_officer}, {kind: network_failsafe_team}], timeout: 30m, repeats: 2, channels: [sms, email]}
`, first, r.IntN(benchRotas), r.IntN(benchRotas), next)
	}
	w("policies:\n")
	for _, id := range []string{"critical", "urgent", "cancer", "significant", "stroke"} {
		w("  - id: %s\n    steps:\n%s", id, steps(fmt.Sprintf("{kind: referrer}, {kind: oncall, ref: rota-%02d}", r.IntN(benchRotas))))
	}
	w("  - id: quarantine\n    steps:\n%s", steps("{kind: failsafe_officer}, {kind: person, ref: p001}"))
	w("people:\n")
	for p := range benchPeople {
		w("  - id: p%03d\n    name: Generated Person %d\n    gmc: \"%d%06d\"\n    ids: [\"%s-L%03d\"]\n    contacts:\n", p, p, 1+i%9, p, tenant, p)
		w("      - {channel: sms, address: \"+447700900%03d\"}\n", p%1000)
		w("      - {channel: email, address: p%03d@%s.example.nhs.uk}\n", p, strings.ToLower(tenant))
		if p%3 == 0 {
			w("      - {channel: teams, address: p%03d@%s.example.nhs.uk}\n", p, strings.ToLower(tenant))
		}
	}
	w("teams:\n")
	for tm := range benchTeams {
		w("  - {id: team-%02d, aliases: [\"T%02d\"], members: [", tm, tm)
		for m := range 10 {
			if m > 0 {
				w(", ")
			}
			w("p%03d", (tm*10+m)%benchPeople)
		}
		w("]}\n")
	}
	if i == 0 {
		w("  - {id: network, members: [p000, p001, p002]}\n")
	}
	w("rotas:\n")
	for ro := range benchRotas {
		p := func() string { return fmt.Sprintf("p%03d", r.IntN(benchPeople)) }
		w("  - id: rota-%02d\n    shifts:\n", ro)
		w("      - {days: [weekdays], start: \"08:00\", end: \"18:00\", people: [%s, %s]}\n", p(), p())
		w("      - {days: [weekdays], start: \"18:00\", end: \"08:00\", people: [%s]}\n", p())
		w("      - {days: [sat, sun], start: \"08:00\", end: \"20:00\", people: [%s]}\n", p())
		w("      - {days: [sat, sun], start: \"20:00\", end: \"08:00\", people: [%s]}\n", p())
		w("    overrides:\n")
		for o := range 6 {
			day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 17*o+ro)
			w("      - {from: \"%sT08:00\", to: \"%sT08:00\", people: [%s]}\n", day.Format("2006-01-02"), day.AddDate(0, 0, 1).Format("2006-01-02"), p())
		}
	}
	return []bundle.File{{Name: tenant + "/bundle.yaml", Content: []byte(b.String())}}
}

func genNetwork(tb testing.TB) set {
	tb.Helper()
	s := set{}
	for i := range benchTrusts {
		b, err := bundle.Parse(genBundle(i))
		if err != nil {
			tb.Fatalf("generated bundle %d: %v", i, err)
		}
		s[b.Tenant] = b
	}
	return s
}

// genAlerts draws n alerts across the network over a year.
func genAlerts(n int) []routing.Input {
	r := rand.New(rand.NewPCG(3, 4))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	out := make([]routing.Input, n)
	for i := range out {
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(365*24*60)) * time.Minute)
		tenant := benchTenant(r.IntN(benchTrusts))
		d := &eventsv1.AlertDetails{
			Source:       eventsv1.Source_SOURCE_HL7V2,
			Exam:         &eventsv1.Exam{Code: fmt.Sprintf("C%c%03d", 'A'+rune(r.IntN(26)), r.IntN(1000)), Modality: pick("CT", "MR", "XR", "US", "NM")},
			SourceFlag:   &eventsv1.SourceFlag{Category: eventsv1.Category(r.IntN(5)), Code: fmt.Sprintf("X%02d", r.IntN(80))},
			ReportStatus: eventsv1.ReportStatus_REPORT_STATUS_FINAL,
			Encounter:    &eventsv1.Encounter{PatientClass: pick("E", "I", "O"), Location: fmt.Sprintf("%s%02d^W%d", tenant, r.IntN(8), r.IntN(30))},
			Referrer:     &eventsv1.Clinician{Id: fmt.Sprintf("%d%06d", 1+(r.IntN(benchTrusts))%9, r.IntN(260)), Team: fmt.Sprintf("T%02d", r.IntN(25))},
			ReportedAt:   timestamppb.New(at.Add(-time.Duration(r.IntN(60)) * time.Minute)),
		}
		if r.IntN(3) == 0 {
			d.SourceFlag.AbnormalFlags = []string{pick("AA", "HH", "LL")}
		}
		if r.IntN(4) == 0 {
			d.SourceFlag.TriggerPhrases = []string{pick("tension pneumothorax", "suspected malignancy", "old fracture", "bowel obstruction")}
		}
		out[i] = routing.Input{Tenant: tenant, Kind: routing.KindRaised, Details: d, At: at}
	}
	return out
}

func reportLatencies(b *testing.B, lat []time.Duration, elapsed time.Duration, n int) {
	b.ReportMetric(float64(n)/elapsed.Seconds(), "alerts/s")
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// batch is how many alerts one benchmark iteration handles, so that even
// -benchtime 1x (as `make bench` runs) measures thousands of alerts.
const batch = 4096

func benchAlerts(b *testing.B, fn func(routing.Input) error) {
	alerts := genAlerts(batch)
	lat := make([]time.Duration, 0, b.N*batch)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for _, in := range alerts {
			t0 := time.Now()
			if err := fn(in); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*batch), "ns/alert")
	reportLatencies(b, lat, elapsed, b.N*batch)
}

// BenchmarkEvaluate is the dry run: routing plus the full planned timeline
// (every send of every step resolved at its instant). One op is a batch of
// 4096 alerts; run with -cpu 1 for the single-core figure.
func BenchmarkEvaluate(b *testing.B) {
	bs := genNetwork(b)
	benchAlerts(b, func(in routing.Input) error {
		_, err := routing.Evaluate(bs, in)
		return err
	})
}

// BenchmarkRoute is what the consumer does per alert: classify and snapshot.
func BenchmarkRoute(b *testing.B) {
	bs := genNetwork(b)
	benchAlerts(b, func(in routing.Input) error {
		_, err := routing.Route(bs, in)
		return err
	})
}

var sink *bundle.Bundle

// BenchmarkBundleMemory parses (validates and compiles) one generated trust
// bundle per iteration and reports the heap it keeps alive.
func BenchmarkBundleMemory(b *testing.B) {
	files := genBundle(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v, err := bundle.Parse(files)
		if err != nil {
			b.Fatal(err)
		}
		sink = v
	}
	b.StopTimer()
	// Retained heap of ten loaded bundles.
	const n = 10
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	kept := make([]*bundle.Bundle, n)
	for i := range kept {
		kept[i], _ = bundle.Parse(genBundle(i))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "retained-B/bundle")
	b.ReportMetric(float64(len(files[0].Content)), "yaml-B/bundle")
	runtime.KeepAlive(kept)
}

func TestGeneratedNetworkIsValidAndRoutes(t *testing.T) {
	bs := genNetwork(t)
	counts := map[eventsv1.Category]int{}
	rules := 0
	for _, in := range genAlerts(500) {
		ev, err := routing.Evaluate(bs, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.RuleErrors) > 0 {
			t.Fatalf("rule errors: %v", ev.RuleErrors)
		}
		counts[ev.Routed.GetCategory()]++
		if ev.Routed.GetRuleId() != "" {
			rules++
		}
	}
	// The generated alerts exercise the rules and every category.
	if rules == 0 || len(counts) < 4 {
		t.Fatalf("got %d rule matches and categories %v", rules, counts)
	}
}
