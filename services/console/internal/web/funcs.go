package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var funcs = template.FuncMap{
	"when": when,
	// whenSec: the governance timeline's times, to the second.
	"whenSec": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("Mon 2 Jan 2006 15:04:05 UTC")
	},
	"ts":       func(t *timestamppb.Timestamp) string { return when(t.AsTime()) },
	"ago":      ago,
	"minutes":  func(d time.Duration) string { return fmt.Sprintf("%.0f", d.Minutes()) },
	"pct":      func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"category": categoryName,
	"state":    stateName,
	"channel":  func(c eventsv1.Channel) string { return strings.ToLower(strings.TrimPrefix(c.String(), "CHANNEL_")) },
	"join":     strings.Join,
	"nhs":      nhsNumber,
	"isZero":   func(t time.Time) bool { return t.IsZero() },
	"deref": func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	},
	"dict3": func(title, id string, rows []ComplianceRow) rowsBlock { return rowsBlock{title, id, rows} },
}

func when(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return "—"
	}
	return t.UTC().Format("Mon 2 Jan 2006 15:04 UTC")
}

// ago is a duration as people say it: "3 h 5 min".
func ago(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	d = d.Round(time.Minute)
	days, h, m := int(d.Hours())/24, int(d.Hours())%24, int(d.Minutes())%60
	switch {
	case days > 0:
		return fmt.Sprintf("%d d %d h", days, h)
	case h > 0:
		return fmt.Sprintf("%d h %d min", h, m)
	default:
		return fmt.Sprintf("%d min", m)
	}
}

func categoryName(c eventsv1.Category) string {
	switch c {
	case eventsv1.Category_CATEGORY_CRITICAL:
		return "Critical"
	case eventsv1.Category_CATEGORY_URGENT:
		return "Urgent"
	case eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED:
		return "Significant unexpected"
	case eventsv1.Category_CATEGORY_CANCER:
		return "Suspected cancer"
	case eventsv1.Category_CATEGORY_LOCAL:
		return "Local"
	}
	return "Not yet classified"
}

func stateName(s ackv1.State) string {
	n := strings.ToLower(strings.TrimPrefix(s.String(), "STATE_"))
	if n == "failsafe" {
		return "fail-safe"
	}
	return n
}

// nhsNumber spaces an NHS number 3-3-4 as NHS services print it.
func nhsNumber(n string) string {
	if len(n) != 10 {
		return n
	}
	return n[:3] + " " + n[3:6] + " " + n[6:]
}

// rowsBlock is one grouped table (and its chart) of the compliance page.
type rowsBlock struct {
	Title, ID string
	Rows      []ComplianceRow
}
