package acknowledgement_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/authz/authztest"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
)

// TestTheAuditExportIsServedToSafetyLeadsAndRecorded (issue #21): the
// evidential record heraldctl audit export writes is served over the API
// (JSON and the printable HTML, the same assembly) to a safety lead and a
// fail-safe officer of the alert's trust; a clinician of the trust and
// people of another trust are refused; an unknown alert is NotFound; each
// export is chained in the trust's audit trail as a read by the person.
func TestTheAuditExportIsServedToSafetyLeadsAndRecorded(t *testing.T) {
	e := authzEnv(t)
	ctx := context.Background()
	r := e.start("r1", app.Hooks{})
	as := func(sub string) context.Context { return authztest.As(ctx, sub) }
	a := newAlertID("export-a")
	e.append(ctx, raisedEvent(a), routedEvent(a, nil, time.Hour), sentTo(a, "RZZ", "rzz-dr-ashworth"))
	require.Eventually(t, func() bool {
		g, err := r.client.GetAlert(as("clinician-a"), &ackv1.GetAlertRequest{AlertId: a})
		return err == nil && g.GetState().GetState() == ackv1.State_STATE_NOTIFIED
	}, time.Minute, 50*time.Millisecond)

	for _, sub := range []string{"safety-lead", "failsafe-a"} {
		x, err := r.client.ExportAudit(as(sub), &ackv1.ExportAuditRequest{AlertId: a})
		require.NoError(t, err, sub)
		require.Equal(t, "RZZ", x.GetTenant())
		var rec audit.Export
		require.NoError(t, json.Unmarshal(x.GetJson(), &rec), "the JSON is heraldctl's Export")
		require.Equal(t, a, rec.AlertID)
		var types []string
		for _, ev := range rec.Events {
			types = append(types, ev.Type)
		}
		require.Equal(t, []string{"AlertRaised", "AlertRouted", "NotificationSent"}, types)
		require.Len(t, rec.Deliveries, 1)
		page := string(x.GetHtml())
		require.Contains(t, page, a)
		require.Contains(t, page, "<html")
		require.NotContains(t, page, "<script")
	}
	for _, sub := range []string{"clinician-a", "clinician-b", "failsafe-b", "operator-a"} {
		_, err := r.client.ExportAudit(as(sub), &ackv1.ExportAuditRequest{AlertId: a})
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%s exported trust RZZ's record: %v", sub, err)
	}
	_, err := r.client.ExportAudit(as("safety-lead"), &ackv1.ExportAuditRequest{AlertId: newAlertID("never-raised")})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	_, err = r.client.ExportAudit(as("safety-lead"), &ackv1.ExportAuditRequest{})
	requireViolation(t, err, "alert_id")

	// Each export is a read in the trust's chain, by the person as verified.
	require.Eventually(t, func() bool {
		n := 0
		for _, v := range viewsOf(t, e, a) {
			if strings.Contains(v.GetDetail(), "audit-export") {
				n++
			}
		}
		return n >= 2
	}, 2*time.Minute, 200*time.Millisecond, "the two exports are chained")
	readers := map[string]string{}
	for _, v := range viewsOf(t, e, a) {
		if v.GetDetail() == "viewed audit-export" {
			readers[v.GetActor().GetPersonId()] = v.GetActor().GetRole()
		}
	}
	require.Equal(t, map[string]string{"rzz-safety-lead-morgan": "safety-lead", "rzz-fso-patel": "failsafe-officer"}, readers)
}
