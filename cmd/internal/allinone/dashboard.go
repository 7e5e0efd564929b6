package allinone

import (
	"context"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	"github.com/herald-health/herald/services/notification"
)

// dashboard is the page `make run` points newcomers at: the alerts with
// their state and step, and every message the notification service sent,
// captured instead of delivered, each with its acknowledge link.
type dashboard struct {
	ack     ackv1.AcknowledgementServiceClient
	capture *notification.Capture
	log     *slog.Logger
}

type alertRow struct {
	ID, Ref, Tenant, Category, State, Deadline, Raised string
	Step                                               uint32
	Overdue                                            bool
}

type messageRow struct {
	At, Channel, To, Subject, Ref, Link, Category, Trust string
	Step, Repeat                                         uint32
	Failsafe                                             bool
}

func (d *dashboard) page(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var alerts []alertRow
	counts := map[string]int{}
	resp, err := d.ack.ListAlerts(ctx, &ackv1.ListAlertsRequest{PageSize: 200})
	if err != nil {
		d.log.Warn("dashboard could not list alerts", "error", err.Error())
	}
	now := time.Now()
	for _, a := range resp.GetAlerts() {
		state := strings.ToLower(strings.TrimPrefix(a.GetState().String(), "STATE_"))
		counts[state]++
		deadline := a.GetClocks().GetAcknowledgeBy()
		row := alertRow{
			ID: a.GetAlertId(), Ref: a.GetAccessionRef(), Tenant: a.GetTenant(), State: state, Step: a.GetStep(),
			Category: strings.ToLower(strings.TrimPrefix(a.GetCategory().String(), "CATEGORY_")),
			Raised:   a.GetRaisedAt().AsTime().Local().Format("15:04:05"),
		}
		if deadline != nil {
			row.Deadline = deadline.AsTime().Local().Format("15:04:05")
			open := a.GetState() != ackv1.State_STATE_ACKNOWLEDGED && a.GetState() != ackv1.State_STATE_ACTIONED &&
				a.GetState() != ackv1.State_STATE_CLOSED && a.GetState() != ackv1.State_STATE_CANCELLED
			row.Overdue = open && deadline.AsTime().Before(now)
		}
		alerts = append(alerts, row)
	}
	slices.SortFunc(alerts, func(a, b alertRow) int { return strings.Compare(b.Raised, a.Raised) })
	msgs := d.capture.Messages()
	rows := make([]messageRow, 0, len(msgs))
	for i := len(msgs) - 1; i >= 0 && len(rows) < 200; i-- {
		m := msgs[i]
		rows = append(rows, messageRow{
			Channel: strings.ToLower(strings.TrimPrefix(m.Channel.String(), "CHANNEL_")),
			To:      m.Address, Subject: m.Subject, Link: m.Data.AckLink, Ref: m.Data.Ref(),
			Category: m.Data.Category, Trust: m.Data.Trust, Step: m.Data.Step, Repeat: m.Data.Repeat, Failsafe: m.Data.Failsafe,
		})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplate.Execute(w, map[string]any{"Alerts": alerts, "Messages": rows, "Counts": counts, "Now": now.Format("15:04:05")}); err != nil {
		d.log.Warn("dashboard render", "error", err.Error())
	}
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Herald (make run)</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{margin:0 0 .2em} .sub{color:#666;margin-bottom:1em}
table{border-collapse:collapse;width:100%;margin-bottom:2em;font-size:.9em}
th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd}
th{background:#f3f3f3}
.critical{color:#b00;font-weight:600} .overdue{background:#fff0f0}
.state-acknowledged,.state-actioned{color:#070} .state-failsafe{color:#b00;font-weight:600}
.chip{display:inline-block;padding:.1em .6em;margin-right:.4em;border-radius:1em;background:#eef}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:2em}
</style></head><body>
<h1>Herald</h1>
<div class="sub">Synthetic alerts from two demo trusts (RZZ, RZY), policies sped up 60x. Refreshes every 2 s; {{.Now}}.
Messages are captured here instead of being sent; click a link to acknowledge as its recipient.</div>
<div>{{range $k, $v := .Counts}}<span class="chip">{{$k}}: {{$v}}</span>{{end}}</div>
<div class="cols"><div>
<h2>Alerts</h2>
<table><tr><th>raised</th><th>alert</th><th>trust</th><th>category</th><th>state</th><th>step</th><th>ack by</th></tr>
{{range .Alerts}}<tr class="{{if .Overdue}}overdue{{end}}"><td>{{.Raised}}</td><td><code title="alert id {{.ID}}">{{.Ref}}</code></td><td>{{.Tenant}}</td>
<td class="{{.Category}}">{{.Category}}</td><td class="state-{{.State}}">{{.State}}</td><td>{{.Step}}</td><td>{{.Deadline}}</td></tr>
{{else}}<tr><td colspan="7">No alerts yet: the simulator raises one every few seconds.</td></tr>{{end}}
</table></div><div>
<h2>Captured messages</h2>
<table><tr><th>channel</th><th>to</th><th>alert</th><th>step</th><th>message</th><th></th></tr>
{{range .Messages}}<tr><td>{{.Channel}}</td><td>{{.To}}</td><td><code>{{.Ref}}</code></td><td>{{.Step}}{{if .Repeat}}.{{.Repeat}}{{end}}</td>
<td>{{if .Failsafe}}<b>fail-safe</b> {{end}}{{.Subject}}</td><td>{{if .Link}}<a href="{{.Link}}" target="_blank">acknowledge</a>{{end}}</td></tr>
{{else}}<tr><td colspan="6">No messages yet.</td></tr>{{end}}
</table></div></div>
</body></html>`))
