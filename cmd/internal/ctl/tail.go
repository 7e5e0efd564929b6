package ctl

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func tailCommand() command {
	return command{
		name:    "tail",
		summary: "follow the event log, decoded, one line per event",
		usage: `heraldctl tail: follow herald.alert-events.v1 as events are appended.

  heraldctl tail                        new events from now on
  heraldctl tail -from-beginning        the whole log, then follow
  heraldctl tail -alert ALERT_ID        one alert's events

Under make run it follows that run's embedded broker (found through the run's state file).

Each line shows time, event type, alert, tenant and a summary without patient data. -payload prints
each event in full as JSON: that includes patient data, so use it only where you may see it.
`,
		run: runTail,
	}
}

func runTail(ctx context.Context, e *env, args []string) error {
	c := tailCommand()
	fs := newFlags(c, e)
	brokers := config.StringList(strings.Split(e.addrs.kafka, ","))
	fs.Var(&brokers, "brokers", "Kafka brokers")
	topic := fs.String("topic", eventlog.TopicEvents, "topic to follow")
	fromBeginning := fs.Bool("from-beginning", false, "start at the beginning of the log")
	alert := fs.String("alert", "", "only this alert's events")
	payload := fs.Bool("payload", false, "print full events as JSON (contains patient data)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	// Fail fast, not retry forever, when nothing listens there.
	conn, err := net.DialTimeout("tcp", brokers[0], 3*time.Second)
	if err != nil {
		return fmt.Errorf("the Kafka broker %s (address from %s) is not reachable: is Herald running (make run)? Otherwise pass -brokers or set HERALD_CTL_KAFKA", brokers[0], e.addrs.from)
	}
	_ = conn.Close()
	cfg, err := kafkaConfig(brokers, *topic)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	return eventlog.Consume(ctx, eventlog.ConsumerConfig{
		Config:     cfg,
		GroupID:    fmt.Sprintf("heraldctl-tail-%d", time.Now().UnixNano()),
		StartAtEnd: !*fromBeginning,
	}, func(_ context.Context, d eventlog.Delivery) error {
		if *alert != "" && d.Event.GetAlertId() != *alert {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if *payload {
			b, err := protojson.Marshal(d.Event)
			if err != nil {
				return eventlog.Permanent(err)
			}
			fmt.Fprintln(e.out, string(b))
			return nil
		}
		fmt.Fprintln(e.out, Line(d.Event))
		return nil
	})
}

// Line renders an event as one line without patient data: time, type,
// alert id, tenant and a type-specific summary.
func Line(ev *eventsv1.Event) string {
	return fmt.Sprintf("%s  %-22s %s %s  %s", ev.GetOccurredAt().AsTime().Local().Format("15:04:05.000"),
		eventlog.TypeOf(ev), ev.GetAlertId(), ev.GetTenant(), Summary(ev))
}

// Summary describes an event for people, using identifiers, categories,
// steps, channels and reasons only: never patient details or report text.
func Summary(ev *eventsv1.Event) string {
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised:
		d := p.AlertRaised.GetDetails()
		return fmt.Sprintf("via %s, flag %s, report %s", source(d.GetSource()), categoryName(d.GetSourceFlag().GetCategory()), reportStatus(d.GetReportStatus()))
	case *eventsv1.Event_AlertAmended:
		d := p.AlertAmended.GetDetails()
		return fmt.Sprintf("report %s, flag %s", reportStatus(d.GetReportStatus()), categoryName(d.GetSourceFlag().GetCategory()))
	case *eventsv1.Event_AlertCancelled:
		return "report cancelled by the source"
	case *eventsv1.Event_AlertQuarantined:
		var fields []string
		for _, pr := range p.AlertQuarantined.GetProblems() {
			fields = append(fields, pr.GetField()+": "+pr.GetProblem())
		}
		return "incomplete report quarantined for the fail-safe team (" + strings.Join(fields, "; ") + ")"
	case *eventsv1.Event_AlertRouted:
		r := p.AlertRouted
		s := fmt.Sprintf("%s, policy %s v%s, %d steps, acknowledge by %s", categoryName(r.GetCategory()),
			r.GetPolicy().GetRef().GetPolicyId(), r.GetPolicy().GetRef().GetVersion(), len(r.GetPolicy().GetSteps()), when(r.GetClocks().GetAcknowledgeBy()))
		if r.GetClassificationReason() != "" {
			s += " (" + r.GetClassificationReason() + ")"
		}
		return s
	case *eventsv1.Event_NotificationSent:
		n := p.NotificationSent
		return fmt.Sprintf("step %d/%d to %s by %s", n.GetStep(), n.GetRepeat(), n.GetRecipient().GetPersonId(), channel(n.GetChannel()))
	case *eventsv1.Event_NotificationFailed:
		n := p.NotificationFailed
		return fmt.Sprintf("step %d to %s by %s failed (permanent=%v, step failed=%v)", n.GetStep(), n.GetRecipient().GetPersonId(), channel(n.GetChannel()), n.GetPermanent(), n.GetStepFailed())
	case *eventsv1.Event_NotificationSuperseded:
		n := p.NotificationSuperseded
		to := "step"
		if n.GetRecipient().GetPersonId() != "" {
			to = n.GetRecipient().GetPersonId()
		}
		return fmt.Sprintf("step %d/%d to %s not sent: %s", n.GetStep(), n.GetRepeat(), to, n.GetReason())
	case *eventsv1.Event_NotificationDelivered:
		return "delivered by " + channel(p.NotificationDelivered.GetChannel())
	case *eventsv1.Event_AlertRead:
		return "read by " + p.AlertRead.GetActor().GetPersonId()
	case *eventsv1.Event_AlertAcknowledged:
		return fmt.Sprintf("accepted by %s at step %d", p.AlertAcknowledged.GetActor().GetPersonId(), p.AlertAcknowledged.GetStep())
	case *eventsv1.Event_AlertDeclined:
		return fmt.Sprintf("declined by %s: %s", p.AlertDeclined.GetActor().GetPersonId(), strings.ToLower(strings.TrimPrefix(p.AlertDeclined.GetReason().String(), "DECLINE_REASON_")))
	case *eventsv1.Event_ActionRecorded:
		return "action recorded by " + p.ActionRecorded.GetActor().GetPersonId()
	case *eventsv1.Event_AlertEscalated:
		x := p.AlertEscalated
		return fmt.Sprintf("step %d -> %d (repeat %d): %s", x.GetFromStep(), x.GetToStep(), x.GetRepeat(), strings.ToLower(strings.TrimPrefix(x.GetReason().String(), "ESCALATION_REASON_")))
	case *eventsv1.Event_SlaBreached:
		return fmt.Sprintf("%s deadline %s passed", strings.ToLower(strings.TrimPrefix(p.SlaBreached.GetClock().String(), "CLOCK_KIND_")), when(p.SlaBreached.GetDeadline()))
	case *eventsv1.Event_FailsafeQueued:
		return fmt.Sprintf("policy exhausted after step %d: in fail-safe queue %s", p.FailsafeQueued.GetLastStep(), p.FailsafeQueued.GetQueue())
	case *eventsv1.Event_AlertClosed:
		return "closed by " + p.AlertClosed.GetActor().GetPersonId()
	case *eventsv1.Event_StepRecipientsResolved:
		r := p.StepRecipientsResolved
		return fmt.Sprintf("step %d (repeat %d) resolved to %d recipients", r.GetStep(), r.GetRepeat(), len(r.GetPersonIds()))
	case *eventsv1.Event_NotificationDeferred:
		n := p.NotificationDeferred
		return fmt.Sprintf("step %d/%d to %s by %s deferred (%s), digest due %s", n.GetStep(), n.GetRepeat(), n.GetRecipient().GetPersonId(),
			channel(n.GetChannel()), n.GetReason(), when(n.GetDigestAt()))
	case *eventsv1.Event_DigestSent:
		n := p.DigestSent
		return fmt.Sprintf("step %d/%d to %s by %s in a digest of %d alerts", n.GetStep(), n.GetRepeat(), n.GetRecipient().GetPersonId(),
			channel(n.GetChannel()), n.GetReferences())
	case *eventsv1.Event_BreachNoticeSent:
		n := p.BreachNoticeSent
		return fmt.Sprintf("%s breach told to %s by %s", strings.ToLower(strings.TrimPrefix(n.GetClock().String(), "CLOCK_KIND_")),
			n.GetRecipient().GetPersonId(), channel(n.GetChannel()))
	case *eventsv1.Event_TimerRepaired:
		r := p.TimerRepaired
		return fmt.Sprintf("lost SLA timer re-armed by the watchdog, %s late (deadline %s, step %d, %s)",
			r.GetOverdueBy().AsDuration().Round(time.Second), when(r.GetDeadline()), r.GetStep(), strings.Join(r.GetTimers(), ", "))
	}
	return ""
}

func source(s eventsv1.Source) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SOURCE_"))
}

func reportStatus(s eventsv1.ReportStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "REPORT_STATUS_"))
}

func channel(c eventsv1.Channel) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CHANNEL_"))
}
