package ctl

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/alertref"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func listCommand() command {
	return command{
		name:    "list",
		summary: "list alerts by tenant, state, category, overdue or assignee",
		usage: `heraldctl list: list alerts, newest first, one line each.

  heraldctl list                                  every alert
  heraldctl list -tenant RZZ -state failsafe      the trust's fail-safe queue
  heraldctl list -overdue -category critical      critical alerts past a deadline
`,
		run: runList,
	}
}

func runList(ctx context.Context, e *env, args []string) error {
	c := listCommand()
	fs := newFlags(c, e)
	addr := fs.String("addr", e.addrs.ack, "acknowledgement gRPC address")
	tenant := fs.String("tenant", "", "trust ODS code")
	state := fs.String("state", "", "state: raised, routed, notified, delivered, read, acknowledged, actioned, declined, escalated, failsafe, closed, cancelled, quarantined")
	category := fs.String("category", "", "critical, urgent, significant or cancer")
	overdue := fs.Bool("overdue", false, "only alerts past a deadline")
	assignee := fs.String("assignee", "", "person id the alert is with")
	limit := fs.Int("limit", 50, "most alerts to show")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	req := &ackv1.ListAlertsRequest{Tenant: *tenant, OverdueOnly: *overdue, Assignee: *assignee, PageSize: int32(*limit)}
	if *state != "" {
		v, ok := ackv1.State_value["STATE_"+strings.ToUpper(*state)]
		if !ok {
			return fmt.Errorf("-state %q is not a state; see -h", *state)
		}
		req.States = []ackv1.State{ackv1.State(v)}
	}
	if *category != "" {
		cat, ok := categories[strings.ToLower(*category)]
		if !ok {
			return fmt.Errorf("-category %q is not one of critical, urgent, significant, cancer", *category)
		}
		req.Category = cat
	}
	conn, err := e.dial(*addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := timeout(ctx)
	defer cancel()
	resp, err := ackv1.NewAcknowledgementServiceClient(conn).ListAlerts(ctx, req)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ALERT\tREFERENCE\tTENANT\tCATEGORY\tSTATE\tSTEP\tACK BY\tRAISED")
	for _, a := range resp.GetAlerts() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.GetAlertId(), a.GetAccessionRef(), a.GetTenant(), categoryName(a.GetCategory()),
			stateName(a.GetState()), a.GetStep(), when(a.GetClocks().GetAcknowledgeBy()), when(a.GetRaisedAt()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(resp.GetAlerts()) == 0 {
		fmt.Fprintln(e.out, "(no alerts match)")
	}
	return nil
}

func showCommand() command {
	return command{
		name:    "show",
		summary: "show an alert's state and full timeline",
		usage: `heraldctl show ALERT_ID|REFERENCE: the alert's state, deadlines and every event in log order.
The alert may be named by its id or by the reference people see in messages.

  heraldctl show 5d41402abc4b2a76b9719d911017c592
  heraldctl show HRD-7K3M-Q9TX-2P4D
`,
		run: runShow,
	}
}

func runShow(ctx context.Context, e *env, args []string) error {
	c := showCommand()
	fs := newFlags(c, e)
	addr := fs.String("addr", e.addrs.ack, "acknowledgement gRPC address")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	id, err := oneArg(fs, "alert id or reference")
	if err != nil {
		return err
	}
	conn, err := e.dial(*addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := timeout(ctx)
	defer cancel()
	resp, err := ackv1.NewAcknowledgementServiceClient(conn).GetAlert(ctx, &ackv1.GetAlertRequest{AlertId: id})
	if err != nil {
		return err
	}
	s := resp.GetState()
	fmt.Fprintf(e.out, "alert      %s (reference %s)\n", s.GetAlertId(), s.GetAccessionRef())
	fmt.Fprintf(e.out, "tenant     %s\n", s.GetTenant())
	fmt.Fprintf(e.out, "category   %s\n", categoryName(s.GetCategory()))
	fmt.Fprintf(e.out, "state      %s, step %d, repeat %d\n", stateName(s.GetState()), s.GetStep(), s.GetRepeat())
	fmt.Fprintf(e.out, "policy     %s version %s\n", s.GetPolicy().GetRef().GetPolicyId(), s.GetPolicy().GetRef().GetVersion())
	fmt.Fprintf(e.out, "deadlines  communicate %s, acknowledge %s, action %s\n", when(s.GetClocks().GetCommunicateBy()), when(s.GetClocks().GetAcknowledgeBy()), when(s.GetClocks().GetActionBy()))
	if s.GetAcknowledgedBy().GetPersonId() != "" {
		fmt.Fprintf(e.out, "accepted   by %s at %s\n", s.GetAcknowledgedBy().GetPersonId(), when(s.GetAcknowledgedAt()))
	}
	timeline := resp.GetTimeline()
	if len(timeline) == 0 {
		timeline = s.GetTimeline()
	}
	fmt.Fprintln(e.out, "\ntimeline:")
	tw := tabwriter.NewWriter(e.out, 2, 4, 2, ' ', 0)
	for _, t := range timeline {
		note := ""
		if t.GetNoEffect() {
			note = " (recorded, no effect)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s%s\n", when(t.GetAt()), t.GetType(), t.GetSummary(), note)
	}
	return tw.Flush()
}

func ackCommand() command {
	return command{
		name:    "ack",
		summary: "acknowledge an alert: accept responsibility for it",
		usage: `heraldctl ack ALERT_ID: record that you (signed in with heraldctl login) accept responsibility.

  heraldctl ack 5d41402abc4b2a76b9719d911017c592

Repeating the same -request-id is safe: it returns the first outcome.
`,
		run: func(ctx context.Context, e *env, args []string) error {
			return runCommand(ctx, e, args, ackCommand(), func(ctx context.Context, c ackv1.AcknowledgementServiceClient, id string, reqID string, _ commandFlags) (*ackv1.AlertState, error) {
				r, err := c.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: reqID})
				return r.GetState(), err
			})
		},
	}
}

func declineCommand() command {
	return command{
		name:    "decline",
		summary: "decline an alert with a reason; it re-routes to the next target",
		usage: `heraldctl decline ALERT_ID -reason REASON [-note TEXT]

Reasons: not-my-patient, wrong-team, left-post, other.

  heraldctl decline 5d41402abc4b2a76b9719d911017c592 -reason wrong-team
`,
		run: func(ctx context.Context, e *env, args []string) error {
			return runCommand(ctx, e, args, declineCommand(), func(ctx context.Context, c ackv1.AcknowledgementServiceClient, id string, reqID string, f commandFlags) (*ackv1.AlertState, error) {
				reason, ok := eventsv1.DeclineReason_value["DECLINE_REASON_"+strings.ToUpper(strings.ReplaceAll(f.reason, "-", "_"))]
				if !ok || f.reason == "" {
					return nil, fmt.Errorf("-reason %q is not one of not-my-patient, wrong-team, left-post, other", f.reason)
				}
				r, err := c.Decline(ctx, &ackv1.DeclineRequest{AlertId: id, Reason: eventsv1.DeclineReason(reason), Note: f.note, RequestId: reqID})
				return r.GetState(), err
			})
		},
	}
}

func actionCommand() command {
	return command{
		name:    "action",
		summary: "record what was done about an alert (stops the action-by clock)",
		usage: `heraldctl action ALERT_ID -what TEXT

  heraldctl action 5d41402abc4b2a76b9719d911017c592 -what "chest drain inserted"
`,
		run: func(ctx context.Context, e *env, args []string) error {
			return runCommand(ctx, e, args, actionCommand(), func(ctx context.Context, c ackv1.AcknowledgementServiceClient, id string, reqID string, f commandFlags) (*ackv1.AlertState, error) {
				if f.what == "" {
					return nil, fmt.Errorf("-what is required: say what was done")
				}
				r, err := c.RecordAction(ctx, &ackv1.RecordActionRequest{AlertId: id, Action: f.what, RequestId: reqID})
				return r.GetState(), err
			})
		},
	}
}

func closeCommand() command {
	return command{
		name:    "close",
		summary: "close an alert (a fail-safe officer, with a reason)",
		usage: `heraldctl close ALERT_ID -reason TEXT: a fail-safe officer of the alert's trust (signed in with
heraldctl login) closes an alert, for example one in the fail-safe queue that was dealt with outside
Herald. Nothing else ever closes an alert.

  heraldctl close 5d41402abc4b2a76b9719d911017c592 -reason "patient seen in ED; report discussed with consultant"
`,
		run: func(ctx context.Context, e *env, args []string) error {
			return runCommand(ctx, e, args, closeCommand(), func(ctx context.Context, c ackv1.AcknowledgementServiceClient, id string, reqID string, f commandFlags) (*ackv1.AlertState, error) {
				if f.reason == "" {
					return nil, fmt.Errorf("-reason is required: say why the alert is closed")
				}
				r, err := c.Close(ctx, &ackv1.CloseRequest{AlertId: id, Reason: f.reason, RequestId: reqID})
				return r.GetState(), err
			})
		},
	}
}

type commandFlags struct{ reason, note, what string }

type commandFunc func(ctx context.Context, c ackv1.AcknowledgementServiceClient, id string, reqID string, f commandFlags) (*ackv1.AlertState, error)

func runCommand(ctx context.Context, e *env, args []string, c command, do commandFunc) error {
	fs := newFlags(c, e)
	addr := fs.String("addr", e.addrs.ack, "acknowledgement gRPC address")
	as := fs.String("as", "", "gone: commands act as the person signed in (heraldctl login)")
	reqID := fs.String("request-id", "", "client request id (default: generated); repeat it to retry safely")
	var f commandFlags
	fs.StringVar(&f.reason, "reason", "", "decline reason")
	fs.StringVar(&f.note, "note", "", "free-text note")
	fs.StringVar(&f.what, "what", "", "what was done")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	id, err := oneArg(fs, "alert id or reference")
	if err != nil {
		return err
	}
	if *as != "" {
		return fmt.Errorf("-as is refused: a command acts as the person signed in (heraldctl login), never as a name given on the command line")
	}
	if *reqID == "" {
		*reqID = fmt.Sprintf("heraldctl-%d", time.Now().UnixNano())
	}
	conn, err := e.dial(*addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := timeout(ctx)
	defer cancel()
	client := ackv1.NewAcknowledgementServiceClient(conn)
	if alertref.Is(id) {
		// A reference as a person quoted it: the API finds its alert.
		r, err := client.GetAlert(ctx, &ackv1.GetAlertRequest{AlertId: id})
		if err != nil {
			return fmt.Errorf("find alert %s: %w", id, err)
		}
		id = r.GetState().GetAlertId()
	}
	st, err := do(ctx, client, id, *reqID, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "alert %s is now %s (step %d)\n", id, stateName(st.GetState()), st.GetStep())
	return nil
}

func stateName(s ackv1.State) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATE_"))
}

func categoryName(c eventsv1.Category) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CATEGORY_"))
}

func when(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return "-"
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04:05")
}
