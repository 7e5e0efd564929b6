// Package hl7in answers HL7 v2 messages received over MLLP: it parses and
// maps each ORU^R01, hands it to the application service and builds the ACK.
// AA is sent only after the events are durable; AE names the field and the
// problem the sender must correct; AR means "not processed, retry later"
// (the event log was unavailable). A quarantined report is accepted (AA)
// with warning ERR segments naming its gaps.
package hl7in

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/services/intake/internal/app"
	"github.com/herald-health/herald/services/intake/internal/domain"
	"github.com/herald-health/herald/services/intake/internal/hl7"
	"github.com/herald-health/herald/services/intake/internal/mllp"
)

// Handler is an mllp.Handler.
type Handler struct {
	svc   *app.Service
	clock clock.Clock
}

// New returns a Handler.
func New(svc *app.Service, clk clock.Clock) *Handler {
	return &Handler{svc: svc, clock: clk}
}

// Handle answers one message.
func (h *Handler) Handle(ctx context.Context, msg []byte) []byte {
	m, err := hl7.Parse(msg)
	if err != nil {
		hdr := hl7.SniffHeader(msg)
		h.svc.Refused(ctx, rejection(hdr, "MSH", "102"))
		return h.ack(hdr, hl7.AckError, "message does not parse", hl7.AckProblem{Field: "MSH", Problem: err.Error(), Code: "102"})
	}
	hdr := hl7.HeaderOf(m)
	subs, err := domain.MapORU(m, h.svc.Directory())
	if err != nil {
		var me *domain.MessageError
		if errors.As(err, &me) {
			h.svc.Refused(ctx, rejection(hdr, me.Field, me.Code))
			return h.ack(hdr, hl7.AckError, me.Error(), hl7.AckProblem{Field: me.Field, Problem: me.Problem, Code: me.Code})
		}
		h.svc.Refused(ctx, rejection(hdr, "", "207"))
		return h.ack(hdr, hl7.AckError, err.Error(), hl7.AckProblem{Problem: err.Error()})
	}
	caller, _ := mllp.PeerIdentity(ctx)
	for _, sub := range subs {
		claim := app.SenderClaim{Channel: "hl7", Caller: caller, Trust: sub.Tenant, Field: "MSH-4", MessageID: hdr.ControlID}
		if err := h.svc.CheckSender(ctx, claim); err != nil {
			// AR: rejected for who sent it, not for what it says; resending
			// it unchanged will not help.
			return h.ack(hdr, hl7.AckReject, err.Error(), hl7.AckProblem{Field: "MSH-4", Problem: err.Error(), Code: "207"})
		}
	}
	rec, dup, err := h.svc.Submit(ctx, app.Message{
		Caller:      caller,
		TenantField: "MSH-4",
		Channel:     "hl7",
		Sender:      strings.ToUpper(m.MSH().Component(4, 1)),
		MessageID:   hdr.ControlID,
		Submissions: subs,
		Raw:         msg,
		ContentType: "x-application/hl7-v2+er7",
	})
	switch {
	case errors.Is(err, app.ErrSenderNotBound):
		return h.ack(hdr, hl7.AckReject, err.Error(), hl7.AckProblem{Field: "MSH-4", Problem: err.Error(), Code: "207"})
	case errors.Is(err, fault.ErrInvalid):
		var problems []hl7.AckProblem
		for _, v := range fault.Violations(err) {
			problems = append(problems, hl7.AckProblem{Field: v.Field, Problem: v.Problem, Code: "101"})
		}
		text := err.Error()
		return h.ack(hdr, hl7.AckError, text, problems...)
	case err != nil:
		// Not durable: the sender must resend later. The reason is generic
		// on purpose (no broker addresses to the sender).
		return h.ack(hdr, hl7.AckReject, "event log unavailable, message not recorded: resend later", hl7.AckProblem{Problem: "event log unavailable", Code: "207"})
	}
	var text []string
	var warnings []hl7.AckProblem
	for _, r := range rec.Results {
		text = append(text, fmt.Sprintf("alert %s %s", r.AlertID, r.Outcome))
		for _, p := range r.Problems {
			warnings = append(warnings, hl7.AckProblem{Field: p.Field, Problem: p.Problem, Code: domain.HL7ErrorCode(p.Code), Warning: true})
		}
	}
	if dup {
		text = append([]string{"duplicate"}, text...)
	}
	return h.ack(hdr, hl7.AckAccept, strings.Join(text, "; "), warnings...)
}

// Oversize answers a message larger than the bound.
func (h *Handler) Oversize(ctx context.Context, head []byte, limit int) []byte {
	hdr := hl7.SniffHeader(head)
	h.svc.Refused(ctx, rejection(hdr, "", "207"))
	return h.ack(hdr, hl7.AckError, fmt.Sprintf("message exceeds %d bytes", limit), hl7.AckProblem{Problem: fmt.Sprintf("message exceeds %d bytes", limit), Code: "207"})
}

func (h *Handler) ack(hdr hl7.Header, code hl7.AckCode, text string, problems ...hl7.AckProblem) []byte {
	return hl7.BuildAck(hdr, hl7.Ack{
		Code:      code,
		Text:      text,
		Problems:  problems,
		ControlID: ackControlID(),
		Time:      h.clock.Now(),
	})
}

// rejection describes a refused message for the operators' log: the
// sending facility (MSH-4, first component) and control id (MSH-10) as far
// as they could be read, the field at fault and the ERR code sent back.
func rejection(hdr hl7.Header, field, code string) app.Rejection {
	facility, _, _ := strings.Cut(hdr.SendingFacility, string([]byte{hdr.Delims.Component}))
	r := app.Rejection{Channel: "hl7", Sender: facility, MessageID: hdr.ControlID, Code: code}
	if field != "" {
		r.Fields = []string{field}
	}
	return r
}

// ackControlID returns a new MSH-10 for an ACK: HL7 asks that a sender's
// control ids be unique, and an ACK is a message Herald sends. It is random
// rather than derived from the message it answers, because a message that
// does not parse has nothing to derive it from. 20 characters, the length of
// MSH-10 in HL7 v2.3 to v2.5.
func ackControlID() string {
	var b [9]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return "ACK" + strings.ToUpper(hex.EncodeToString(b[:]))[:17]
}
