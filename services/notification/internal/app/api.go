package app

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/authz/access"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/identity"
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

// The roles that list an alert's notifications and resend one, for the
// alert's trust (platform/authz.Table gives the same for the method).
var (
	listReaders = []identity.Role{access.FailsafeOfficer, access.SafetyLead, access.Operator}
	resenders   = []identity.Role{access.FailsafeOfficer, access.Operator}
)

// ListNotifications lists an alert's notifications, oldest first, if the
// alert belongs to a trust the caller reads (none otherwise).
func (api *API) ListNotifications(ctx context.Context, req *notificationv1.ListNotificationsRequest) (*notificationv1.ListNotificationsResponse, error) {
	if req.GetAlertId() == "" {
		return nil, fault.Invalid("list notifications", fault.Violation{Field: "alert_id", Problem: "is required"})
	}
	recs, err := api.e.o.Store.Records(ctx, req.GetAlertId())
	if err != nil {
		return nil, unavailable(err)
	}
	out := &notificationv1.ListNotificationsResponse{}
	caller, _ := identity.FromContext(ctx)
	for _, r := range recs {
		// Only the caller's trusts: another trust's alert has none.
		if !access.HasAny(caller.Person, r.Tenant, listReaders...) {
			continue
		}
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
	if caller, _ := identity.FromContext(ctx); !access.HasAny(caller.Person, rec.Tenant, resenders...) {
		return nil, fault.PermissionDenied(fmt.Sprintf("resend notification %s: only a %s or %s of trust %s may", rec.NotificationID, access.Operator, access.FailsafeOfficer, rec.Tenant))
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
	// The operator's resend has its attempt on the log before the send, as
	// every send of an alert's message has (same notification id: the
	// receiver sees the same idempotency keys).
	attempted := e.envelope(a, j, eventlog.ID(rec.NotificationID, "attempt", "resend", req.GetOperatorId(), strconv.Itoa(int(rec.Attempts+1))))
	attempted.Payload = &eventsv1.Event_NotificationAttempted{NotificationAttempted: &eventsv1.NotificationAttempted{
		NotificationId: rec.NotificationID, Step: rec.Step, Repeat: rec.Repeat, Recipient: recipient(j), Channel: rec.Channel, Attempt: rec.Attempts + 1}}
	if err := e.o.Log.Append(ctx, attempted); err != nil {
		return nil, unavailable(err)
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
	if req.GetPersonId() == "" {
		v = append(v, fault.Violation{Field: "person_id", Problem: "is required: a test goes only to a contact point of a person in the tenant's policy bundle"})
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
	// Only a contact point the tenant's bundle gives that person: the
	// service signs what it sends, so it must never be pointed at an
	// arbitrary address (an internal URL, a stranger's phone).
	known, err := api.configuredContact(ctx, req, now)
	if err != nil {
		return nil, err
	}
	if !known {
		return nil, fault.Precondition(fmt.Sprintf("the address is not a %s contact point of person %s in tenant %s's policy bundle",
			req.GetChannel(), req.GetPersonId(), req.GetTenant()))
	}
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
		// The provider's error names hosts, addresses and its own answer:
		// the caller learns only whether retrying may help.
		e.o.Logger.WarnContext(ctx, "contact point test refused", slog.String("notification_id", nid), slog.String("error", sendErr.Error()))
		return &notificationv1.TestContactPointResponse{Accepted: false, Error: testFailure(sendErr)}, nil
	}
	return &notificationv1.TestContactPointResponse{Accepted: true, ProviderMessageId: pid}, nil
}

// configuredContact reports whether the request's address is one of the
// person's contact points on the channel, as the rules service resolves
// them now.
func (api *API) configuredContact(ctx context.Context, req *notificationv1.TestContactPointRequest, now time.Time) (bool, error) {
	step := domain.Step{Targets: []domain.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_PERSON, Ref: req.GetPersonId(), Tenant: req.GetTenant()}},
		Channels: []eventsv1.Channel{req.GetChannel()}}
	people, err := api.e.o.Resolver.Resolve(ctx, domain.Alert{ID: "contact-test", Tenant: req.GetTenant()}, step, now)
	if err != nil {
		return false, fmt.Errorf("resolve person %s: %w", req.GetPersonId(), fault.ErrUnavailable)
	}
	for _, p := range people {
		if p.PersonID != req.GetPersonId() {
			continue
		}
		for _, cp := range p.Points {
			if cp.Channel == req.GetChannel() && cp.Address == req.GetAddress() {
				return true, nil
			}
		}
	}
	return false, nil
}

// testFailure says why a test message was not accepted without echoing
// the provider's error (connection details, the address).
func testFailure(err error) string {
	if channel.IsPermanent(err) {
		return "the provider refused the message (permanent: check the contact point)"
	}
	return "the provider could not be reached or did not accept the message now (transient: try again)"
}

// Receipt is the body of a provider's delivery report.
type Receipt struct {
	// Reference is the notification id (Notify's "reference").
	Reference string `json:"reference"`
	// ID is the provider's id of the message or receipt.
	ID string `json:"id"`
	// Status: "delivered", or a failure (FailureStatus).
	Status string `json:"status"`
}

// FailureStatus reports whether a receipt's status says the message did not
// reach the person: GOV.UK Notify's permanent-failure (bounced email,
// unknown number), temporary-failure (inbox full, phone off: Notify has
// stopped trying), technical-failure, and "bounced" or "failed" from other
// providers (an SMTP relay's bounce handler). Such a message counts as a
// failed send: the step moves on at once.
func FailureStatus(status string) bool {
	switch status {
	case "permanent-failure", "temporary-failure", "technical-failure", "bounced", "failed":
		return true
	}
	return false
}

// ReceiptsHandler serves the delivery reports of providers:
//
//   - POST /v1/receipts: Herald's own shape, signed like Herald's webhooks
//     (X-Herald-Timestamp, X-Herald-Signature = sha256=HMAC(secret,
//     timestamp "." body)), at most maxSkew old; refused when secret is
//     empty.
//   - POST /v1/receipts/notify: GOV.UK Notify's delivery-status callback
//     (its JSON: id, reference, status, notification_type, ...), with the
//     bearer token the service gave Notify (Authorization: Bearer
//     <notifyToken>); refused when notifyToken is empty.
//
// "delivered" appends NotificationDelivered; a failure (FailureStatus)
// appends NotificationFailed and moves the person on to their next contact
// point at once (and the step on when nobody is left), like a failed send.
// Both are appended once (deterministic ids); other statuses ("sending",
// "created") are noted on the record.
func (api *API) ReceiptsHandler(secret []byte, maxSkew time.Duration, notifyToken string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/receipts", func(w http.ResponseWriter, r *http.Request) {
		if len(secret) == 0 {
			http.Error(w, "receipts are not configured (setting receipts-secret)", http.StatusServiceUnavailable)
			return
		}
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
		if skew := api.e.o.Clock.Now().Sub(time.Unix(sec, 0)); skew > maxSkew || skew < -maxSkew {
			http.Error(w, "stale timestamp", http.StatusUnauthorized)
			return
		}
		api.receipt(w, r, body)
	})
	mux.HandleFunc("POST /v1/receipts/notify", func(w http.ResponseWriter, r *http.Request) {
		if notifyToken == "" {
			http.Error(w, "Notify callbacks are not configured (setting notify-callback-token-file)", http.StatusServiceUnavailable)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(notifyToken)) != 1 {
			http.Error(w, "bad bearer token", http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		api.receipt(w, r, body)
	})
	return mux
}

// receipt handles an authenticated report.
func (api *API) receipt(w http.ResponseWriter, r *http.Request, body []byte) {
	e := api.e
	var rc Receipt
	if err := json.Unmarshal(body, &rc); err != nil {
		http.Error(w, "body: not JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch {
	case rc.Reference == "":
		http.Error(w, "body: field reference is required (the notification id)", http.StatusBadRequest)
		return
	case rc.Status == "":
		http.Error(w, "body: field status is required", http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	alertID, err := e.o.Store.AlertOf(ctx, rc.Reference)
	if err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	refs := []DigestRef{{AlertID: alertID, NotificationID: rc.Reference}}
	if alertID == "" {
		// A digest's reference: the report is about each message it merged.
		if refs, err = e.o.Store.DigestRefs(ctx, rc.Reference); err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		if len(refs) == 0 {
			http.Error(w, "unknown reference", http.StatusNotFound)
			return
		}
	}
	code := http.StatusNoContent
	for _, ref := range refs {
		c, err := api.receiptOf(ctx, ref, rc)
		if err != nil {
			http.Error(w, "event log or store unavailable", http.StatusServiceUnavailable)
			return
		}
		code = c
	}
	w.WriteHeader(code)
}

// receiptOf acts on a report about one notification; it returns the
// status to answer.
func (api *API) receiptOf(ctx context.Context, ref DigestRef, rc Receipt) (int, error) {
	e := api.e
	alertID := ref.AlertID
	rc.Reference = ref.NotificationID
	rec, err := e.o.Store.Record(ctx, alertID, rc.Reference)
	if err != nil {
		return 0, err
	}
	switch {
	case rc.Status == "delivered":
		err = api.delivered(ctx, alertID, rec, rc)
	case FailureStatus(rc.Status):
		err = api.failedReceipt(ctx, alertID, rec, rc)
	default:
		rec.LastError, rec.UpdatedAt = "provider reported "+rc.Status, e.o.Clock.Now()
		if err := e.o.Store.PutRecord(ctx, rec); err != nil {
			return 0, err
		}
		return http.StatusAccepted, nil
	}
	if err != nil {
		return 0, err
	}
	return http.StatusNoContent, nil
}

func (api *API) delivered(ctx context.Context, alertID string, rec Record, rc Receipt) error {
	e := api.e
	a, err := e.o.Store.Alert(ctx, alertID)
	if err != nil {
		return err
	}
	ev := e.envelope(a, Job{AlertID: alertID, Cause: "receipt:" + rc.Reference}, eventlog.ID(rc.Reference, "delivered"))
	ev.Payload = &eventsv1.Event_NotificationDelivered{NotificationDelivered: &eventsv1.NotificationDelivered{
		NotificationId: rc.Reference, Channel: rec.Channel, ProviderReceiptId: rc.ID}}
	if err := e.o.Log.Append(ctx, ev); err != nil {
		return err
	}
	rec.Phase, rec.UpdatedAt = domain.PhaseDelivered, e.o.Clock.Now()
	if err := e.o.Store.PutRecord(ctx, rec); err != nil {
		return err
	}
	e.o.Logger.InfoContext(ctx, "notification delivered", slog.String("notification_id", rc.Reference),
		slog.String("alert_id", alertID), slog.String("channel", rec.Channel.String()))
	return nil
}

// failedReceipt records a provider's failure report of a message it had
// accepted: NotificationFailed (permanent; event id ID(nid, "receipt",
// status), so a redelivered report appends nothing new), the record failed,
// and the person's job scheduled now, so that the next contact point is
// tried at once and, when none is left, the recipient (and perhaps the
// step) is exhausted: escalation moves on as after a failed send.
func (api *API) failedReceipt(ctx context.Context, alertID string, rec Record, rc Receipt) error {
	e := api.e
	a, err := e.o.Store.Alert(ctx, alertID)
	if err != nil {
		return err
	}
	j := Job{Kind: JobRecipient, AlertID: alertID, Round: rec.Round, Step: rec.Step, Repeat: rec.Repeat, Failsafe: rec.Failsafe,
		Breach: rec.Breach, Critical: a.Critical(), PersonID: rec.PersonID, Role: rec.Role, Tenant: rec.RecipientTenant, Cause: "receipt:" + rc.Reference}
	reason := "provider reported " + rc.Status
	ev := e.envelope(a, j, eventlog.ID(rc.Reference, "receipt", rc.Status))
	ev.Payload = &eventsv1.Event_NotificationFailed{NotificationFailed: &eventsv1.NotificationFailed{
		NotificationId: rc.Reference, Step: rec.Step, Repeat: rec.Repeat, Recipient: recipient(j), Channel: rec.Channel,
		Attempt: rec.Attempts, Reason: reason, Permanent: true}}
	if rec.Phase == domain.PhaseFailed {
		return nil // a repeated report: the person was moved on already
	}
	if err := e.o.Log.Append(ctx, ev); err != nil {
		return err
	}
	rec.Phase, rec.LastError, rec.UpdatedAt = domain.PhaseFailed, reason, e.o.Clock.Now()
	if err := e.o.Store.PutRecord(ctx, rec); err != nil {
		return err
	}
	if err := e.o.Store.Reschedule(ctx, j, e.o.Clock.Now()); err != nil {
		return err
	}
	e.Wake()
	e.count(ctx, a, rec.Channel, "failed_receipt")
	e.o.Logger.InfoContext(ctx, "provider reported a failed delivery: moving on", slog.String("notification_id", rc.Reference),
		slog.String("alert_id", alertID), slog.String("channel", rec.Channel.String()), slog.String("status", rc.Status))
	return nil
}
