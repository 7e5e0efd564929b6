package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/channel"
	"github.com/herald-health/herald/services/notification/internal/content"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// The rate limit never hides a message. A message to a person over their
// limit is deferred: NotificationDeferred goes on the alert's timeline and
// the message waits in the person's digest for its channel (Redis, with its
// contact address), whose job is due DigestAfter after the first message
// held back. The digest job sends one message listing every waiting alert
// still open (reference, category, deadline, acknowledge link) and records
// each: DigestSent and NotificationSent on each alert's timeline (the
// NotificationSent id is the one a plain send would have had, so the step
// counts as told). A digest is not held back by the limit: a person over it
// gets at most one digest per DigestAfter per channel. If the digest cannot
// be sent, each of its messages counts as failed on that contact point and
// goes to the person's next one at once, unlimited.

// deferToDigest holds back the message of job j on contact point cp.
func (e *Engine) deferToDigest(ctx context.Context, a domain.Alert, j Job, rec Record, cp domain.ContactPoint) error {
	it := DigestItem{NotificationID: rec.NotificationID, AlertID: j.AlertID, Round: j.Round, Step: j.Step, Repeat: j.Repeat,
		Failsafe: j.Failsafe, PersonID: j.PersonID, Role: j.Role, RecipientTenant: j.Tenant, Channel: cp.Channel, Address: cp.Address, Cause: j.Cause}
	at, err := e.o.Store.DeferToDigest(ctx, j, it, e.o.Clock.Now().Add(e.o.DigestAfter))
	if err != nil {
		return err
	}
	ev := e.envelope(a, j, eventlog.ID(rec.NotificationID, "deferred"))
	ev.Payload = &eventsv1.Event_NotificationDeferred{NotificationDeferred: &eventsv1.NotificationDeferred{
		NotificationId: rec.NotificationID, Step: j.Step, Repeat: j.Repeat, Recipient: recipient(j), Channel: cp.Channel,
		Reason:   fmt.Sprintf("rate limit: %d messages to this person in %s; merged into one digest message", e.o.Limit.Max, e.o.Limit.Window),
		DigestAt: timestamppb.New(at)}}
	if err := e.o.Log.Append(ctx, ev); err != nil {
		// The item waits in the digest all the same; the digest records it.
		return err
	}
	rec.Phase, rec.LastError, rec.UpdatedAt = domain.PhaseDeferred, "rate limit: in the next digest", e.o.Clock.Now()
	if err := e.o.Store.PutRecord(ctx, rec); err != nil {
		return err
	}
	e.Wake()
	e.count(ctx, a, cp.Channel, "deferred")
	e.o.Logger.InfoContext(ctx, "notification deferred to a digest (rate limit)", slog.String("notification_id", rec.NotificationID),
		slog.String("alert_id", j.AlertID), slog.String("channel", cp.Channel.String()), slog.Time("digest_at", at))
	return nil
}

// digestLine is one alert of a digest.
type digestLine struct {
	item  DigestItem
	alert domain.Alert
	data  content.Data
}

// sendDigest works a digest job: one message to the person listing the
// alerts their rate limit held back that may still be sent.
func (e *Engine) sendDigest(ctx context.Context, j Job) error {
	items, err := e.o.Store.DigestItems(ctx, j.PersonID, j.Channel)
	if err != nil {
		return err
	}
	var all []string
	var lines []digestLine
	for _, it := range items {
		all = append(all, it.NotificationID)
		a, err := e.o.Store.Alert(ctx, it.AlertID)
		if err != nil {
			return err
		}
		if reason := a.Gate(it.Round, it.Step, it.Repeat, it.Failsafe, it.PersonID); reason != domain.GateOK {
			// Held back for the digest, then overtaken: the log says so.
			if err := e.supersede(ctx, a, it.Job(a.Critical()), reason); err != nil {
				return err
			}
			if err := e.cancel(ctx, it.Job(a.Critical()), reason); err != nil {
				return err
			}
			continue
		}
		link, err := e.ackLink(a, it.Job(false), it.NotificationID)
		if err != nil {
			return err
		}
		lines = append(lines, digestLine{item: it, alert: a, data: content.FromAlert(a, e.refs.Ref(a.ID), it.Step, it.Repeat, it.Failsafe, link)})
	}
	now := e.o.Clock.Now()
	if len(lines) == 0 {
		return e.o.Store.FinishDigest(ctx, j, all, now)
	}
	// Most severe first, then by deadline: the order a person works in.
	slices.SortFunc(lines, func(x, y digestLine) int {
		return cmp.Or(cmp.Compare(rank(x.alert.Category), rank(y.alert.Category)), x.data.Deadline.Compare(y.data.Deadline),
			cmp.Compare(x.item.NotificationID, y.item.NotificationID))
	})
	ids := []string{"digest", j.PersonID, j.Channel.String()}
	d := content.Data{Category: "Digest", CategoryKey: "digest", Trust: lines[0].data.Trust}
	for _, l := range lines {
		ids = append(ids, l.item.NotificationID)
		d.Digest = append(d.Digest, l.data)
	}
	digestID := eventlog.ID(ids...)
	m, err := e.o.Renderer.Render(j.Channel, d)
	if err != nil {
		return fmt.Errorf("render digest %s: %w", digestID, err)
	}
	refs := make([]DigestRef, len(lines))
	for i, l := range lines {
		refs[i] = DigestRef{AlertID: l.item.AlertID, NotificationID: l.item.NotificationID}
	}
	// Before the send: a provider's receipt of the digest (its reference is
	// the digest id) reaches each message it merged.
	if err := e.o.Store.PutDigestRefs(ctx, digestID, refs, e.o.AckLinkTTL+24*time.Hour); err != nil {
		return err
	}
	// claim is the number of this attempt at the digest: more than 1 means
	// an earlier worker stopped between its claim and the outcome (its job
	// came back only after its lease ended, so it is not sending any
	// more). Such a digest is in doubt: the provider may or may not have
	// it. It is sent again with the same idempotency key (the digest id is
	// its Message-ID, Idempotency-Key or reference), up to the in-doubt
	// cap: a possible duplicate over a possible silent loss. After the cap
	// it fails like a refused digest (each message to its person's next
	// contact point).
	claim, err := e.o.Store.ClaimDigest(ctx, digestID, 24*time.Hour)
	if err != nil {
		return err
	}
	resend := claim - 1
	if resend > 0 && !domain.ResendInDoubt(resend-1, e.o.InDoubtResends) {
		e.o.Logger.WarnContext(ctx, "digest in doubt: resends ran out, its messages fail on this contact point", slog.String("digest_id", digestID),
			slog.Uint64("in_doubt_resends", uint64(resend-1)))
		return e.digestFailed(ctx, j, lines, all, digestID, channel.Permanent(fmt.Errorf(
			"in doubt: the outcome of attempt %d is unknown (its worker stopped mid-send) and the digest was already resent in doubt %d times; not sent again on this contact point",
			claim-1, resend-1)))
	}
	// Each message the digest merges has its attempt on the log before
	// the send, as a step's message has: after a Redis loss (which takes
	// the digest with it) the rebuild restores it as in flight, and its
	// step's job sends it on its own once this send must have ended.
	for _, l := range lines {
		it := l.item
		rj := it.Job(l.alert.Critical())
		ev := e.envelope(l.alert, rj, eventlog.ID(it.NotificationID, "attempt", "digest", digestID, fmt.Sprint(claim)))
		ev.Payload = &eventsv1.Event_NotificationAttempted{NotificationAttempted: &eventsv1.NotificationAttempted{NotificationId: it.NotificationID,
			Step: it.Step, Repeat: it.Repeat, Recipient: recipient(rj), Channel: it.Channel, Attempt: claim, InDoubtResend: resend, DigestId: digestID}}
		if err := e.o.Log.Append(ctx, ev); err != nil {
			return err
		}
	}
	if resend > 0 {
		e.o.Logger.WarnContext(ctx, "digest in doubt: sent again with the same idempotency key", slog.String("digest_id", digestID),
			slog.Uint64("in_doubt_resend", uint64(resend)))
		for _, l := range lines {
			e.count(ctx, l.alert, j.Channel, "resent_in_doubt")
		}
	}
	providerID := digestID
	sender, ok := e.o.Senders[j.Channel]
	var sendErr error
	if !ok {
		sendErr = channel.Permanent(fmt.Errorf("channel %s is not configured", j.Channel))
	} else {
		sctx, cancel := context.WithTimeout(ctx, e.o.SendTimeout)
		providerID, sendErr = sender.Send(sctx, channel.Message{ID: digestID, Channel: j.Channel, Address: lines[0].item.Address,
			Subject: m.Subject, Body: m.Body, Data: d})
		cancel()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if sendErr != nil {
		return e.digestFailed(ctx, j, lines, all, digestID, sendErr)
	}
	e.countSend(j.PersonID)
	for _, l := range lines {
		it := l.item
		rj := it.Job(l.alert.Critical())
		evs := []*eventsv1.Event{e.envelope(l.alert, rj, eventlog.ID(it.NotificationID, "digest")), e.envelope(l.alert, rj, eventlog.ID(it.NotificationID, "sent"))}
		evs[0].Payload = &eventsv1.Event_DigestSent{DigestSent: &eventsv1.DigestSent{DigestId: digestID, NotificationId: it.NotificationID,
			Step: it.Step, Repeat: it.Repeat, Recipient: recipient(rj), Channel: it.Channel, References: uint32(len(lines)), ProviderMessageId: providerID}}
		evs[1].Payload = &eventsv1.Event_NotificationSent{NotificationSent: &eventsv1.NotificationSent{NotificationId: it.NotificationID,
			Step: it.Step, Repeat: it.Repeat, Recipient: recipient(rj), Channel: it.Channel, Attempt: claim, ProviderMessageId: providerID}}
		if err := e.o.Log.Append(ctx, evs...); err != nil {
			return err
		}
		rec, err := e.o.Store.Record(ctx, it.AlertID, it.NotificationID)
		if err != nil {
			return err
		}
		rec = digestRecord(rec, it, l.alert, now)
		rec.Phase, rec.ProviderID, rec.LastError, rec.Attempts = domain.PhaseRecorded, providerID, "", max(rec.Attempts, claim)
		if err := e.o.Store.PutRecord(ctx, rec); err != nil {
			return err
		}
		e.count(ctx, l.alert, it.Channel, "digest")
	}
	e.o.Logger.InfoContext(ctx, "digest sent", slog.String("digest_id", digestID), slog.String("channel", j.Channel.String()),
		slog.Int("references", len(lines)))
	return e.o.Store.FinishDigest(ctx, j, all, now)
}

// digestFailed: a digest the provider refused fails each of its messages
// on that contact point (NotificationFailed, permanent); each goes to its
// person's next contact point at once, not held back by the limit.
func (e *Engine) digestFailed(ctx context.Context, j Job, lines []digestLine, all []string, digestID string, sendErr error) error {
	now := e.o.Clock.Now()
	for _, l := range lines {
		it := l.item
		rj := it.Job(l.alert.Critical())
		ev := e.envelope(l.alert, rj, eventlog.ID(it.NotificationID, "failed", "digest", digestID))
		ev.Payload = &eventsv1.Event_NotificationFailed{NotificationFailed: &eventsv1.NotificationFailed{NotificationId: it.NotificationID,
			Step: it.Step, Repeat: it.Repeat, Recipient: recipient(rj), Channel: it.Channel, Attempt: 1,
			Reason: "digest: " + sendErr.Error(), Permanent: true}}
		if err := e.o.Log.Append(ctx, ev); err != nil {
			return err
		}
		rec, err := e.o.Store.Record(ctx, it.AlertID, it.NotificationID)
		if err != nil {
			return err
		}
		rec = digestRecord(rec, it, l.alert, now)
		rec.Phase, rec.LastError, rec.Attempts = domain.PhaseFailed, "digest: "+sendErr.Error(), max(rec.Attempts, 1)
		if err := e.o.Store.PutRecord(ctx, rec); err != nil {
			return err
		}
		rj.Unlimited = true
		if err := e.o.Store.Reschedule(ctx, rj, now); err != nil {
			return err
		}
	}
	e.Wake()
	e.o.Logger.InfoContext(ctx, "digest failed: each message moves to the next contact point", slog.String("digest_id", digestID),
		slog.String("channel", j.Channel.String()), slog.String("error", sendErr.Error()))
	return e.o.Store.FinishDigest(ctx, j, all, now)
}

// digestRecord fills a record the deferral may not have written (a crash
// between the two).
func digestRecord(rec Record, it DigestItem, a domain.Alert, now time.Time) Record {
	if rec.NotificationID == "" {
		rec = Record{NotificationID: it.NotificationID, Round: it.Round, AlertID: it.AlertID, Tenant: a.Tenant, Step: it.Step,
			Repeat: it.Repeat, Failsafe: it.Failsafe, PersonID: it.PersonID, Role: it.Role, RecipientTenant: it.RecipientTenant,
			Channel: it.Channel, CreatedAt: now}
	}
	rec.UpdatedAt = now
	return rec
}

// rank orders categories most severe first.
func rank(c eventsv1.Category) int {
	switch c {
	case eventsv1.Category_CATEGORY_CRITICAL:
		return 0
	case eventsv1.Category_CATEGORY_URGENT:
		return 1
	case eventsv1.Category_CATEGORY_CANCER:
		return 2
	case eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED:
		return 3
	}
	return 4
}

// countSend counts a send to person in the rate-limit history without
// asking the limit (a digest is never held back).
func (e *Engine) countSend(person string) {
	if e.o.Limit.Max <= 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.history[person] = append(e.history[person], e.o.Clock.Now())
}
