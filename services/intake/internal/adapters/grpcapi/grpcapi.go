// Package grpcapi serves herald.intake.v1.IntakeService. A success reply
// means the event is durable; a request that cannot be identified is
// InvalidArgument with the fields named (errors are mapped to codes by
// platform/grpcserver); an unavailable event log is Unavailable.
package grpcapi

import (
	"context"
	"errors"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/identity"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
	"github.com/herald-health/herald/services/intake/internal/app"
	"github.com/herald-health/herald/services/intake/internal/domain"
)

var fields = domain.Fields{
	Tenant: "report.tenant", MessageID: "report.source_message_id", Accession: "report.accession",
	NHSNumber: "report.patient.nhs_number", Referrer: "report.referrer", ReportText: "report.report_text",
	Other: "report.finding_code",
}

// Server implements intakev1.IntakeServiceServer.
type Server struct {
	intakev1.UnimplementedIntakeServiceServer
	svc *app.Service
}

// New returns a Server.
func New(svc *app.Service) *Server { return &Server{svc: svc} }

// RaiseAlert records a new flagged report.
func (s *Server) RaiseAlert(ctx context.Context, req *intakev1.RaiseAlertRequest) (*intakev1.RaiseAlertResponse, error) {
	sub, err := s.submission(req.GetReport(), domain.IntentRaise)
	if err != nil {
		s.svc.Refused(ctx, rejection(req.GetReport(), err))
		return nil, err
	}
	if err := s.checkSender(ctx, callerOf(ctx), sub); err != nil {
		return nil, err
	}
	if t, ok := s.svc.Directory().Tenant(sub.Tenant); ok && !t.Flagged(sub.Details.SourceFlag) {
		err := fault.Invalid("report not flagged", fault.Violation{Field: "report.source_flag", Problem: "a raised alert needs the source's flag: a category, a code, an abnormal flag or a trigger phrase in the report text"})
		s.svc.Refused(ctx, rejection(req.GetReport(), err))
		return nil, err
	}
	rec, dup, err := s.submit(ctx, req, sub)
	if err != nil {
		return nil, err
	}
	r := rec.Results[0]
	resp := &intakev1.RaiseAlertResponse{AlertId: r.AlertID, Duplicate: dup, Quarantined: r.Outcome == domain.OutcomeQuarantined}
	for _, p := range r.Problems {
		resp.Problems = append(resp.Problems, &eventsv1.ValidationProblem{Field: p.Field, Problem: p.Problem, Code: p.Code})
	}
	return resp, nil
}

// AmendAlert records a corrected report.
func (s *Server) AmendAlert(ctx context.Context, req *intakev1.AmendAlertRequest) (*intakev1.AmendAlertResponse, error) {
	sub, err := s.submission(req.GetReport(), domain.IntentAmend)
	if err != nil {
		s.svc.Refused(ctx, rejection(req.GetReport(), err))
		return nil, err
	}
	sub.Reason = req.GetReason()
	rec, dup, err := s.submit(ctx, req, sub)
	if err != nil {
		return nil, err
	}
	return &intakev1.AmendAlertResponse{AlertId: rec.Results[0].AlertID, Duplicate: dup}, nil
}

// CancelAlert records that the source cancelled the report.
func (s *Server) CancelAlert(ctx context.Context, req *intakev1.CancelAlertRequest) (*intakev1.CancelAlertResponse, error) {
	sub := domain.Submission{
		Tenant: req.GetTenant(),
		Intent: domain.IntentCancel,
		Reason: req.GetReason(),
		Details: &eventsv1.AlertDetails{
			Source:          eventsv1.Source_SOURCE_GRPC,
			SourceSystem:    req.GetSourceSystem(),
			SourceMessageId: req.GetSourceMessageId(),
			Accession:       req.GetAccession(),
			FindingCode:     req.GetFindingCode(),
			ReportStatus:    eventsv1.ReportStatus_REPORT_STATUS_CANCELLED,
		},
		Fields: domain.Fields{Tenant: "tenant", MessageID: "source_message_id", Accession: "accession", Other: "finding_code"},
	}
	rec, dup, err := s.submit(ctx, req, sub)
	if err != nil {
		return nil, err
	}
	return &intakev1.CancelAlertResponse{AlertId: rec.Results[0].AlertID, Duplicate: dup}, nil
}

func (s *Server) submission(r *intakev1.Report, intent domain.Intent) (domain.Submission, error) {
	if r == nil {
		return domain.Submission{}, fault.Invalid("report is required", fault.Violation{Field: "report", Problem: "is required"})
	}
	if _, ok := eventsv1.ReportStatus_name[int32(r.GetReportStatus())]; !ok {
		return domain.Submission{}, fault.Invalid("bad report status", fault.Violation{Field: "report.report_status", Problem: "unknown value"})
	}
	flag := proto.Clone(r.GetSourceFlag()).(*eventsv1.SourceFlag)
	if flag == nil {
		flag = &eventsv1.SourceFlag{}
	}
	if _, ok := eventsv1.Category_name[int32(flag.GetCategory())]; !ok {
		return domain.Submission{}, fault.Invalid("bad category", fault.Violation{Field: "report.source_flag.category", Problem: "unknown value"})
	}
	if t, ok := s.svc.Directory().Tenant(r.GetTenant()); ok {
		found := t.Extract(domain.Signals{Text: r.GetReportText()})
		for _, p := range found.TriggerPhrases {
			if !slices.Contains(flag.TriggerPhrases, p) {
				flag.TriggerPhrases = append(flag.TriggerPhrases, p)
			}
		}
	}
	patient := proto.Clone(r.GetPatient()).(*eventsv1.Patient)
	if patient != nil {
		patient.NhsNumber = domain.NormaliseNHSNumber(patient.NhsNumber)
	}
	d := &eventsv1.AlertDetails{
		Source:          eventsv1.Source_SOURCE_GRPC,
		SourceSystem:    r.GetSourceSystem(),
		SourceMessageId: r.GetSourceMessageId(),
		Accession:       r.GetAccession(),
		FindingCode:     r.GetFindingCode(),
		Patient:         patient,
		Exam:            r.GetExam(),
		SourceFlag:      flag,
		ReportStatus:    r.GetReportStatus(),
		Referrer:        r.GetReferrer(),
		CopiesTo:        r.GetCopiesTo(),
		Radiologist:     r.GetRadiologist(),
		Encounter:       r.GetEncounter(),
		ReportReference: r.GetReportReference(),
		ReportText:      r.GetReportText(),
		ReportedAt:      r.GetReportedAt(),
	}
	return domain.Submission{Tenant: r.GetTenant(), Intent: intent, Details: d, Fields: fields}, nil
}

func (s *Server) submit(ctx context.Context, req proto.Message, sub domain.Submission) (app.Record, bool, error) {
	caller := callerOf(ctx)
	if err := s.checkSender(ctx, caller, sub); err != nil {
		return app.Record{}, false, err
	}
	raw, _ := proto.Marshal(req)
	rec, dup, err := s.svc.Submit(ctx, app.Message{
		Caller:      caller,
		TenantField: sub.Fields.Tenant,
		Channel:     "grpc",
		Sender:      sub.Tenant + "/" + sub.Details.SourceSystem,
		MessageID:   sub.Details.SourceMessageId,
		Submissions: []domain.Submission{sub},
		Raw:         raw,
		ContentType: "application/x-protobuf; proto=" + string(proto.MessageName(req)),
	})
	if errors.Is(err, app.ErrSenderNotBound) {
		return app.Record{}, false, status.Error(codes.PermissionDenied, err.Error())
	}
	return rec, dup, err
}

// checkSender refuses, PermissionDenied, a request for a trust its caller
// is not bound to (app.CheckSender).
func (s *Server) checkSender(ctx context.Context, caller string, sub domain.Submission) error {
	claim := app.SenderClaim{Channel: "grpc", Caller: caller, Trust: sub.Tenant, Field: sub.Fields.Tenant, MessageID: sub.Details.GetSourceMessageId()}
	if err := s.svc.CheckSender(ctx, claim); err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}

// callerOf is the calling service's identity: the one authentication put
// in the context (platform/identity), else the verified client
// certificate's.
func callerOf(ctx context.Context) string {
	if c, ok := identity.FromContext(ctx); ok && c.Service != "" {
		return c.Service
	}
	id, _ := grpcserver.PeerIdentity(ctx)
	return id
}

// rejection describes a refused request for the operators' log: the tenant
// and source message id it named and the fields at fault.
func rejection(r *intakev1.Report, err error) app.Rejection {
	rej := app.Rejection{Channel: "grpc", Sender: r.GetTenant() + "/" + r.GetSourceSystem(), MessageID: r.GetSourceMessageId(), Code: "InvalidArgument"}
	for _, v := range fault.Violations(err) {
		rej.Fields = append(rej.Fields, v.Field)
	}
	return rej
}
