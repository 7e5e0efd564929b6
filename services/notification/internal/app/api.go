package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/fault"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	notificationv1 "github.com/herald-health/herald/proto/gen/herald/notification/v1"
	"github.com/herald-health/herald/services/notification/internal/channel"
	"github.com/herald-health/herald/services/notification/internal/content"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// API implements the NotificationService gRPC API.
type API struct {
	notificationv1.UnimplementedNotificationServiceServer
	e *Engine
}

// NewAPI returns the gRPC API over the engine.
func NewAPI(e *Engine) *API { return &API{e: e} }

func toProto(r Record) *notificationv1.Notification {
	return &notificationv1.Notification{
		NotificationId: r.NotificationID, AlertId: r.AlertID, Step: r.Step,
		Recipient: &eventsv1.Recipient{PersonId: r.PersonID, Role: r.Role, Tenant: r.RecipientTenant},
		Channel:   r.Channel, Status: r.Phase.String(), Attempts: r.Attempts, LastError: r.LastError,
		UpdatedAt: timestamppb.New(r.UpdatedAt), Repeat: r.Repeat, ProviderMessageId: r.ProviderID, Failsafe: r.Failsafe,
	}
}

// ListNotifications lists an alert's notifications, oldest first.
func (api *API) ListNotifications(ctx context.Context, req *notificationv1.ListNotificationsRequest) (*notificationv1.ListNotificationsResponse, error) {
	if req.GetAlertId() == "" {
		return nil, fault.Invalid("list notifications", fault.Violation{Field: "alert_id", Problem: "is required"})
	}
	recs, err := api.e.o.Store.Records(ctx, req.GetAlertId())
	if err != nil {
		return nil, unavailable(err)
	}
	out := &notificationv1.ListNotificationsResponse{}
	for _, r := range recs {
		out.Notifications = append(out.Notifications, toProto(r))
	}
	return out, nil
}

// ResendNotification re-sends a notification to the same person on the
// same channel (address resolved now), bypassing dedup: an operator's
// deliberate act. It is audited: the log line and the NotificationSent
// event's causation id name the operator.
func (api *API) ResendNotification(ctx context.Context, req *notificationv1.ResendNotificationRequest) (*notificationv1.ResendNotificationResponse, error) {
	var v []fault.Violation
	if req.GetNotificationId() == "" {
		v = append(v, fault.Violation{Field: "notification_id", Problem: "is required"})
	}
	if req.GetOperatorId() == "" {
		v = append(v, fault.Violation{Field: "operator_id", Problem: "is required"})
	}
	if req.GetReason() == "" {
		v = append(v, fault.Violation{Field: "reason", Problem: "is required"})
	}
	if len(v) > 0 {
		return nil, fault.Invalid("resend notification", v...)
	}
	e := api.e
	alertID, err := e.o.Store.AlertOf(ctx, req.GetNotificationId())
	if err != nil {
		return nil, unavailable(err)
	}
	if alertID == "" {
		return nil, fault.NotFound(fmt.Sprintf("notification %s not found", req.GetNotificationId()))
	}
	rec, err := e.o.Store.Record(ctx, alertID, req.GetNotificationId())
	if err != nil {
		return nil, unavailable(err)
	}
	a, err := e.o.Store.Alert(ctx, alertID)
	if err != nil {
		return nil, unavailable(err)
	}
	j := Job{Kind: JobRecipient, AlertID: alertID, Round: rec.Round, Step: rec.Step, Repeat: rec.Repeat, Failsafe: rec.Failsafe,
		PersonID: rec.PersonID, Role: rec.Role, Tenant: rec.RecipientTenant, Critical: a.Critical(), Cause: "operator:" + req.GetOperatorId()}
	step, ok := a.StepAt(rec.Step)
	if !ok {
		return nil, fault.Precondition(fmt.Sprintf("step %d of alert %s is not in its policy", rec.Step, alertID))
	}
	recips, err := e.o.Resolver.Resolve(ctx, a, step, e.o.Clock.Now())
	if err != nil {
		return nil, unavailable(err)
	}
	var cp *domain.ContactPoint
	for _, r := range recips {
		if r.PersonID == rec.PersonID {
			for _, p := range domain.Plan(nil, r.Points) {
				if p.Channel == rec.Channel {
					cp = &p
				}
			}
		}
	}
	if cp == nil {
		return nil, fault.Precondition(fmt.Sprintf("recipient of notification %s has no %s contact point now", rec.NotificationID, rec.Channel))
	}
	e.o.Logger.InfoContext(ctx, "audit: notification resend requested", slog.Bool("audit", true),
		slog.String("operator_id", req.GetOperatorId()), slog.String("notification_id", rec.NotificationID),
		slog.String("alert_id", alertID), slog.String("channel", rec.Channel.String()))
	msg, err := e.message(a, j, rec.NotificationID, *cp)
	if err != nil {
		return nil, err
	}
	sender, ok := e.o.Senders[rec.Channel]
	if !ok {
		return nil, fault.Precondition(fmt.Sprintf("channel %s is not configured", rec.Channel))
	}
	sctx, cancel := context.WithTimeout(ctx, e.o.SendTimeout)
	pid, sendErr := sender.Send(sctx, msg)
	cancel()
	rec.Attempts++
	rec.UpdatedAt = e.o.Clock.Now()
	if sendErr != nil {
		rec.LastError = sendErr.Error()
		if err := e.o.Store.PutRecord(ctx, rec); err != nil {
			return nil, unavailable(err)
		}
		return nil, fault.Unavailable(fmt.Sprintf("resend notification %s: %v", rec.NotificationID, sendErr))
	}
	rec.Phase, rec.ProviderID, rec.LastError = domain.PhaseRecorded, pid, ""
	ev := e.envelope(a, j, eventlog.ID(rec.NotificationID, "resent", req.GetOperatorId(), strconv.Itoa(int(rec.Attempts))))
	ev.Payload = &eventsv1.Event_NotificationSent{NotificationSent: &eventsv1.NotificationSent{
		NotificationId: rec.NotificationID, Step: rec.Step, Repeat: rec.Repeat, Recipient: recipient(j), Channel: rec.Channel,
		Attempt: rec.Attempts, ProviderMessageId: pid}}
	if err := e.o.Log.Append(ctx, ev); err != nil {
		return nil, err
	}
	if err := e.o.Store.PutRecord(ctx, rec); err != nil {
		return nil, unavailable(err)
	}
	return &notificationv1.ResendNotificationResponse{Notification: toProto(rec)}, nil
}

// TestContactPoint sends a test message (no alert, no patient data) to an
// address on a channel and reports whether the provider accepted it. The
// address is never logged.
func (api *API) TestContactPoint(ctx context.Context, req *notificationv1.TestContactPointRequest) (*notificationv1.TestContactPointResponse, error) {
	var v []fault.Violation
	if req.GetTenant() == "" {
		v = append(v, fault.Violation{Field: "tenant", Problem: "is required"})
	}
	if req.GetChannel() == eventsv1.Channel_CHANNEL_UNSPECIFIED {
		v = append(v, fault.Violation{Field: "channel", Problem: "is required"})
	}
	if req.GetAddress() == "" {
		v = append(v, fault.Violation{Field: "address", Problem: "is required"})
	}
	if len(v) > 0 {
		return nil, fault.Invalid("test contact point", v...)
	}
	e := api.e
	sender, ok := e.o.Senders[req.GetChannel()]
	if !ok {
		return nil, fault.Precondition(fmt.Sprintf("channel %s is not configured", req.GetChannel()))
	}
	now := e.o.Clock.Now()
	// A random id: a hash over the address would let anyone with the logs
	// test guesses of it.
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	nid := eventlog.ID("test", req.GetTenant(), req.GetChannel().String(), now.Format(time.RFC3339Nano), hex.EncodeToString(nonce))
	d := content.Data{AlertID: nid, Reference: e.refs.Ref(nid), Category: "Test", CategoryKey: "test", Trust: req.GetTenant(), Test: true}
	m, err := e.o.Renderer.Render(req.GetChannel(), d)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, e.o.SendTimeout)
	defer cancel()
	pid, sendErr := sender.Send(sctx, channel.Message{ID: nid, Channel: req.GetChannel(), Address: req.GetAddress(),
		Subject: m.Subject, Body: m.Body, Data: d})
	e.o.Logger.InfoContext(ctx, "contact point tested", slog.String("tenant", req.GetTenant()),
		slog.String("channel", req.GetChannel().String()), slog.String("notification_id", nid), slog.Bool("accepted", sendErr == nil))
	if sendErr != nil {
		return &notificationv1.TestContactPointResponse{Accepted: false, Error: sendErr.Error()}, nil
	}
	return &notificationv1.TestContactPointResponse{Accepted: true, ProviderMessageId: pid}, nil
}

// Receipt is the body of a provider's delivery report.
type Receipt struct {
	// Reference is the notification id (Notify's "reference").
	Reference string `json:"reference"`
	// ID is the provider's id of the message or receipt.
	ID string `json:"id"`
	// Status: "delivered", or a failure such as "permanent-failure".
	Status string `json:"status"`
}

// ReceiptsHandler serves POST /v1/receipts: a provider's delivery report,
// signed like Herald's webhooks (X-Herald-Timestamp, X-Herald-Signature =
// sha256=HMAC(secret, timestamp "." body)), at most maxSkew old. A
// "delivered" report appends NotificationDelivered (once: deterministic id).
func (api *API) ReceiptsHandler(secret []byte, maxSkew time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/receipts", func(w http.ResponseWriter, r *http.Request) {
		e := api.e
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		ts := r.Header.Get(channel.HeaderTimestamp)
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || !channel.VerifySignature(secret, ts, body, r.Header.Get(channel.HeaderSignature)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if skew := e.o.Clock.Now().Sub(time.Unix(sec, 0)); skew > maxSkew || skew < -maxSkew {
			http.Error(w, "stale timestamp", http.StatusUnauthorized)
			return
		}
		var rc Receipt
		if err := json.Unmarshal(body, &rc); err != nil || rc.Reference == "" || rc.Status == "" {
			http.Error(w, "body: reference and status are required", http.StatusBadRequest)
			return
		}
		ctx := r.Context()
		alertID, err := e.o.Store.AlertOf(ctx, rc.Reference)
		if err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		if alertID == "" {
			http.Error(w, "unknown reference", http.StatusNotFound)
			return
		}
		rec, err := e.o.Store.Record(ctx, alertID, rc.Reference)
		if err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		if rc.Status != "delivered" {
			rec.LastError, rec.UpdatedAt = "provider reported "+rc.Status, e.o.Clock.Now()
			if err := e.o.Store.PutRecord(ctx, rec); err != nil {
				http.Error(w, "store unavailable", http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusAccepted)
			return
		}
		a, err := e.o.Store.Alert(ctx, alertID)
		if err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		ev := e.envelope(a, Job{AlertID: alertID, Cause: "receipt:" + rc.Reference}, eventlog.ID(rc.Reference, "delivered"))
		ev.Payload = &eventsv1.Event_NotificationDelivered{NotificationDelivered: &eventsv1.NotificationDelivered{
			NotificationId: rc.Reference, Channel: rec.Channel, ProviderReceiptId: rc.ID}}
		if err := e.o.Log.Append(ctx, ev); err != nil {
			http.Error(w, "event log unavailable", http.StatusServiceUnavailable)
			return
		}
		rec.Phase, rec.UpdatedAt = domain.PhaseDelivered, e.o.Clock.Now()
		if err := e.o.Store.PutRecord(ctx, rec); err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		e.o.Logger.InfoContext(ctx, "notification delivered", slog.String("notification_id", rc.Reference),
			slog.String("alert_id", alertID), slog.String("channel", rec.Channel.String()))
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
