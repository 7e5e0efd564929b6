// Package fhirapi is intake's FHIR R4 REST endpoint. A trust posts a
// DiagnosticReport to /fhir/{ods}/DiagnosticReport, or a transaction Bundle
// (DiagnosticReport, Observation, ServiceRequest, Patient) to /fhir/{ods}.
// The tenant is the ODS code in the path. 201 Created (200 for a resend)
// carries the alert reference in Location and an informational
// OperationOutcome; every error is an OperationOutcome with a 4xx (503 when
// the event log is unavailable: nothing was recorded, retry).
package fhirapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/herald-health/herald/platform/mtls"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/services/intake/internal/app"
	"github.com/herald-health/herald/services/intake/internal/domain"
)

// ContentType of FHIR JSON.
const ContentType = "application/fhir+json"

// Handler serves the FHIR endpoint.
type Handler struct {
	svc     *app.Service
	maxBody int64
	log     *slog.Logger
	// fetch reads ServiceRequests from trusts' FHIR servers.
	fetch *http.Client
}

// New returns the handler; bodies over maxBody bytes are refused with 413.
// A ServiceRequest read from a trust's FHIR server (for the referrer of a
// report that does not carry its order) must arrive within resolveTimeout.
func New(svc *app.Service, maxBody int64, resolveTimeout time.Duration, log *slog.Logger) http.Handler {
	h := &Handler{svc: svc, maxBody: maxBody, log: log, fetch: &http.Client{Timeout: resolveTimeout}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fhir/{tenant}/DiagnosticReport", h.post)
	mux.HandleFunc("POST /fhir/{tenant}", h.post)
	// The endpoints exist for POST only: another method is 405 with Allow,
	// not 404 (which would tell the sender its URL is wrong).
	for _, path := range []string{"/fhir/{tenant}/DiagnosticReport", "/fhir/{tenant}"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", http.MethodPost)
			writeOutcome(w, http.StatusMethodNotAllowed, "error", "not-supported", "", r.Method+" is not supported here: POST a DiagnosticReport to /fhir/{ods}/DiagnosticReport or a Bundle to /fhir/{ods}")
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeOutcome(w, http.StatusNotFound, "error", "not-found", "", "POST a DiagnosticReport to /fhir/{ods}/DiagnosticReport or a Bundle to /fhir/{ods}")
	})
	return mux
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	caller := ""
	if r.TLS != nil {
		caller, _ = mtls.Identity(*r.TLS)
	}
	// Before the body is read or the trust's FHIR server asked anything:
	// a sender may post only for the trusts it is bound to.
	if err := h.svc.CheckSender(r.Context(), app.SenderClaim{Channel: "fhir", Caller: caller, Trust: tenant, Field: "tenant"}); err != nil {
		writeOutcome(w, http.StatusForbidden, "error", "forbidden", "", err.Error())
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") {
		h.svc.Refused(r.Context(), app.Rejection{Channel: "fhir", Sender: tenant, Code: "415"})
		writeOutcome(w, http.StatusUnsupportedMediaType, "error", "not-supported", "", "Content-Type must be application/fhir+json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.svc.Refused(r.Context(), app.Rejection{Channel: "fhir", Sender: tenant, Code: "413"})
			writeOutcome(w, http.StatusRequestEntityTooLarge, "error", "too-costly", "", fmt.Sprintf("body exceeds %d bytes", h.maxBody))
			return
		}
		h.svc.Refused(r.Context(), app.Rejection{Channel: "fhir", Sender: tenant, Code: "400"})
		writeOutcome(w, http.StatusBadRequest, "error", "structure", "", "body could not be read")
		return
	}
	sub, err := domain.MapFHIR(body, tenant, h.svc.Directory(), h.svc.IDs())
	if err != nil {
		var fe *domain.FHIRError
		if errors.As(err, &fe) {
			h.svc.Refused(r.Context(), app.Rejection{Channel: "fhir", Sender: tenant, Fields: []string{fe.Expression}, Code: fmt.Sprint(fe.Status)})
			code := "invalid"
			if fe.Status == http.StatusNotFound {
				code = "not-found"
			}
			writeOutcome(w, fe.Status, "error", code, fe.Expression, fe.Problem)
			return
		}
		h.svc.Refused(r.Context(), app.Rejection{Channel: "fhir", Sender: tenant, Code: "400"})
		writeOutcome(w, http.StatusBadRequest, "error", "invalid", "", err.Error())
		return
	}
	if sub.Details.GetReferrer() == nil && len(sub.BasedOn) > 0 {
		h.resolveReferrer(r.Context(), &sub)
	}
	rec, dup, err := h.svc.Submit(r.Context(), app.Message{
		Caller:      caller,
		TenantField: "tenant",
		Channel:     "fhir",
		Sender:      tenant,
		MessageID:   sub.Details.SourceMessageId,
		Submissions: []domain.Submission{sub},
		Raw:         body,
		ContentType: ContentType,
	})
	switch {
	case errors.Is(err, app.ErrSenderNotBound):
		writeOutcome(w, http.StatusForbidden, "error", "forbidden", "", err.Error())
		return
	case errors.Is(err, fault.ErrInvalid):
		issues := []issue{}
		for _, v := range fault.Violations(err) {
			issues = append(issues, issue{Severity: "error", Code: "required", Expression: []string{v.Field}, Diagnostics: v.Problem})
		}
		writeIssues(w, http.StatusUnprocessableEntity, issues)
		return
	case err != nil:
		writeOutcome(w, http.StatusServiceUnavailable, "error", "transient", "", "event log unavailable: nothing was recorded, retry")
		return
	}
	res := rec.Results[0]
	// 201 only when this request created an event; a resend, or a report
	// nobody flagged (accepted, no alert), is 200.
	status := http.StatusCreated
	if dup || res.Outcome == domain.OutcomeNotFlagged || res.Outcome == domain.OutcomeNoResult {
		status = http.StatusOK
	}
	info := fmt.Sprintf("alert %s %s", res.AlertID, res.Outcome)
	if res.Outcome == domain.OutcomeNoResult {
		info += ": DiagnosticReport.status registered means nothing is available yet, so no alert was raised; post the report again when it is preliminary or final"
	}
	issues := []issue{{Severity: "information", Code: "informational", Diagnostics: info}}
	for _, p := range res.Problems {
		issues = append(issues, issue{Severity: "warning", Code: "incomplete", Expression: []string{p.Field}, Diagnostics: p.Problem})
	}
	w.Header().Set("Location", "/alerts/"+res.AlertID)
	w.Header().Set("X-Herald-Alert-Id", res.AlertID)
	w.Header().Set("X-Herald-Outcome", res.Outcome.String())
	writeIssues(w, status, issues)
}

type issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

func writeOutcome(w http.ResponseWriter, status int, severity, code, expression, diagnostics string) {
	is := issue{Severity: severity, Code: code, Diagnostics: diagnostics}
	if expression != "" {
		is.Expression = []string{expression}
	}
	writeIssues(w, status, []issue{is})
}

// writeIssues writes an OperationOutcome. It is built with the samply
// structs so its shape is R4's.
func writeIssues(w http.ResponseWriter, status int, issues []issue) {
	oo := fhir.OperationOutcome{}
	for _, is := range issues {
		var sev fhir.IssueSeverity
		_ = sev.UnmarshalJSON([]byte(`"` + is.Severity + `"`))
		var code fhir.IssueType
		if err := code.UnmarshalJSON([]byte(`"` + is.Code + `"`)); err != nil {
			_ = code.UnmarshalJSON([]byte(`"processing"`))
		}
		d := is.Diagnostics
		oo.Issue = append(oo.Issue, fhir.OperationOutcomeIssue{Severity: sev, Code: code, Diagnostics: &d, Expression: is.Expression})
	}
	b, err := json.Marshal(oo)
	if err != nil {
		http.Error(w, "encode OperationOutcome", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// resolveReferrer reads the ServiceRequest that the report is basedOn from
// the trust's FHIR server, when the trust has one and the request did not
// carry it, and takes the referrer from its requester. Whatever goes wrong
// leaves the report without a referrer (so it is quarantined) with the
// reason; it is never refused for it.
func (h *Handler) resolveReferrer(ctx context.Context, sub *domain.Submission) {
	t, ok := h.svc.Directory().Tenant(sub.Tenant)
	if !ok || t.FHIRServer == "" {
		return
	}
	for _, ref := range sub.BasedOn {
		id, ok := domain.ServiceRequestID(ref, t.FHIRServer)
		if !ok {
			continue
		}
		body, err := h.readServiceRequest(ctx, t.FHIRServer, id)
		if err != nil {
			h.log.WarnContext(ctx, "ServiceRequest not read from the trust's FHIR server", "tenant", t.ODS, "reason", err.Error())
			domain.ServiceRequestUnavailable(sub, err.Error())
			return
		}
		domain.ApplyServiceRequest(sub, body)
		return
	}
}

// readServiceRequest GETs base/ServiceRequest/id. Its errors say what
// happened without any content of the answer (for the log and the sender).
func (h *Handler) readServiceRequest(ctx context.Context, base, id string) ([]byte, error) {
	url := strings.TrimRight(base, "/") + "/ServiceRequest/" + id
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, errors.New("the trust's FHIR server address is not usable")
	}
	req.Header.Set("Accept", ContentType)
	resp, err := h.fetch.Do(req)
	if err != nil {
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("no answer within %v", h.fetch.Timeout)
		}
		return nil, errors.New("the server could not be reached")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, h.maxBody+1))
	switch {
	case err != nil:
		return nil, errors.New("the answer could not be read")
	case int64(len(body)) > h.maxBody:
		return nil, fmt.Errorf("the answer exceeds %d bytes", h.maxBody)
	}
	return body, nil
}
