package bundle_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

const rotaYAML = `people:
  - {id: day, contacts: [{channel: sms, address: "+447700900001"}]}
  - {id: night, contacts: [{channel: sms, address: "+447700900002"}]}
  - {id: weekend, contacts: [{channel: sms, address: "+447700900003"}]}
  - {id: cover, contacts: [{channel: sms, address: "+447700900004"}]}
  - {id: fso, contacts: [{channel: sms, address: "+447700900005"}]}
teams:
  - {id: net, members: [fso]}
rotas:
  - id: reg
    shifts:
      - {days: [weekdays], start: "08:00", end: "20:00", people: [day]}
      - {days: [weekend], start: "08:00", end: "20:00", people: [weekend]}
      - {days: [daily], start: "20:00", end: "08:00", people: [night]}
    overrides:
      - {from: "2026-10-24T20:00", to: "2026-10-25T08:00", people: [cover], reason: swap over the clock change}
      - {from: "2026-12-24T20:00", to: "2026-12-27T08:00", people: [cover, night]}
  - id: allday
    shifts:
      - {days: [sat, sun], start: "09:00", end: "09:00", people: [weekend]}
`

func rotaBundle(t *testing.T) *bundle.Bundle {
	t.Helper()
	files := baseFiles()
	files["dir.yaml"] = rotaYAML
	files["main.yaml"] = strings.Replace(files["main.yaml"], "ref: rota", "ref: reg", 1)
	return mustParse(t, toFiles(files))
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestRotaOnCallAcrossDaylightSavingAndOverrides(t *testing.T) {
	b := rotaBundle(t)
	cases := []struct {
		name string
		rota string
		at   string // UTC
		want []string
	}{
		// A plain week in winter (GMT = UTC).
		{"weekday day shift starts at 08:00", "reg", "2026-01-14T08:00:00Z", []string{"day"}},
		{"weekday day shift ends before 20:00", "reg", "2026-01-14T19:59:59Z", []string{"day"}},
		{"night shift from 20:00", "reg", "2026-01-14T20:00:00Z", []string{"night"}},
		{"night shift runs past midnight", "reg", "2026-01-15T03:00:00Z", []string{"night"}},
		{"night shift ends at 08:00", "reg", "2026-01-15T07:59:59Z", []string{"night"}},
		{"weekend day shift", "reg", "2026-01-17T12:00:00Z", []string{"weekend"}},
		// Summer: BST = UTC+1, so 08:00 local is 07:00 UTC.
		{"summer day shift starts at 07:00 UTC", "reg", "2026-07-15T07:00:00Z", []string{"day"}},
		{"summer night shift still on at 06:59 UTC", "reg", "2026-07-15T06:59:59Z", []string{"night"}},
		{"summer night starts at 19:00 UTC", "reg", "2026-07-15T19:00:00Z", []string{"night"}},
		// Spring forward: Sunday 29 March 2026, 01:00 GMT becomes 02:00 BST.
		// Saturday's night shift runs 20:00 GMT to 08:00 BST: 11 hours.
		{"spring: Saturday night starts 20:00 GMT", "reg", "2026-03-28T20:00:00Z", []string{"night"}},
		{"spring: just before the change", "reg", "2026-03-29T00:59:59Z", []string{"night"}},
		{"spring: just after the change", "reg", "2026-03-29T01:00:00Z", []string{"night"}},
		{"spring: night ends 08:00 BST = 07:00 UTC", "reg", "2026-03-29T06:59:59Z", []string{"night"}},
		{"spring: Sunday day shift from 07:00 UTC", "reg", "2026-03-29T07:00:00Z", []string{"weekend"}},
		{"spring: Sunday night from 20:00 BST = 19:00 UTC", "reg", "2026-03-29T19:00:00Z", []string{"night"}},
		{"spring: Monday day from 07:00 UTC", "reg", "2026-03-30T07:00:00Z", []string{"day"}},
		// Fall back: Sunday 25 October 2026, 02:00 BST becomes 01:00 GMT.
		// The override covers Saturday night, 20:00 BST to 08:00 GMT: 13 hours.
		{"autumn: Saturday day ends 20:00 BST = 19:00 UTC", "reg", "2026-10-24T18:59:59Z", []string{"weekend"}},
		{"autumn: override from 20:00 BST = 19:00 UTC", "reg", "2026-10-24T19:00:00Z", []string{"cover"}},
		{"autumn: override in the repeated hour (first 01:30)", "reg", "2026-10-25T00:30:00Z", []string{"cover"}},
		{"autumn: override in the repeated hour (second 01:30)", "reg", "2026-10-25T01:30:00Z", []string{"cover"}},
		{"autumn: override ends 08:00 GMT", "reg", "2026-10-25T07:59:59Z", []string{"cover"}},
		{"autumn: Sunday day shift from 08:00 UTC", "reg", "2026-10-25T08:00:00Z", []string{"weekend"}},
		{"autumn: Sunday night from 20:00 GMT", "reg", "2026-10-25T20:00:00Z", []string{"night"}},
		{"autumn: Monday night ends at 08:00 GMT", "reg", "2026-10-27T07:59:00Z", []string{"night"}},
		// The week before the change: Saturday night without an override.
		{"no override a week earlier", "reg", "2026-10-17T19:00:00Z", []string{"night"}},
		// Multi-day override with two people, exclusive end.
		{"Christmas override", "reg", "2026-12-25T12:00:00Z", []string{"cover", "night"}},
		{"Christmas override ends", "reg", "2026-12-27T08:00:00Z", []string{"weekend"}},
		// A 24-hour shift (start equals end) and a gap.
		{"24h shift Saturday", "allday", "2026-01-17T20:00:00Z", []string{"weekend"}},
		{"24h shift Sunday into Monday", "allday", "2026-01-19T08:59:00Z", []string{"weekend"}},
		{"nobody on a weekday", "allday", "2026-01-19T09:00:00Z", nil},
		{"24h shift across spring change", "allday", "2026-03-29T07:59:00Z", []string{"weekend"}},
		{"24h shift ends 09:00 BST on Monday", "allday", "2026-03-30T08:00:00Z", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := b.Rotas[tc.rota].OnCall(utc(tc.at))
			require.Equal(t, tc.want, got)
		})
	}
}
