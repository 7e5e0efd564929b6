package eventtype

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Summary describes an event for people (heraldctl tail, the audit
// export), using identifiers, categories,
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

func categoryName(c eventsv1.Category) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CATEGORY_"))
}

func when(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return "-"
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04:05")
}
