package grpcapi_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/logging"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/rules/internal/adapters/grpcapi"
	"github.com/herald-health/herald/services/rules/internal/app"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
	"github.com/herald-health/herald/services/rules/internal/domain/routing"
)

func setup(t *testing.T) (*grpcapi.Server, *app.Router) {
	t.Helper()
	reg := app.NewRegistry(time.Now)
	dir := filepath.Join("..", "..", "..", "bundles", "demo")
	require.NoError(t, app.NewLoader(os.DirFS(dir), reg, logging.Discard(), nil).Load(context.Background()))
	router, err := app.NewRouter(func() routing.Bundles { return reg.Snapshot() }, nil, time.Now, logging.Discard(),
		tracenoop.NewTracerProvider().Tracer(""), metricnoop.NewMeterProvider().Meter(""))
	require.NoError(t, err)
	return grpcapi.New(reg, time.Now, logging.Discard(), nil, nil), router
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

// randomAlert draws an alert from the attributes the demo rules look at.
func randomAlert(r *rand.Rand) (string, *eventsv1.AlertDetails, time.Time) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(365*24*60)) * time.Minute)
	d := &eventsv1.AlertDetails{
		Exam:       &eventsv1.Exam{Modality: pick(r, "CT", "MR", "XR", "US", "")},
		SourceFlag: &eventsv1.SourceFlag{Category: eventsv1.Category(r.IntN(6)), Code: pick(r, "", "EDD", "C", "ED_DISCREPANCY")},
		Encounter:  &eventsv1.Encounter{PatientClass: pick(r, "E", "I", "O", "")},
		Referrer:   &eventsv1.Clinician{Id: pick(r, "", "7100001", "7100007", "7200001", "unknown"), Team: pick(r, "", "ED", "AMU", "CMED")},
	}
	if r.IntN(2) == 0 {
		d.SourceFlag.AbnormalFlags = []string{pick(r, "AA", "HH", "LL", "N")}
	}
	if r.IntN(3) == 0 {
		d.SourceFlag.TriggerPhrases = []string{pick(r, "tension pneumothorax", "suspicious for malignancy", "old fracture")}
	}
	if r.IntN(2) == 0 {
		d.ReportedAt = timestamppb.New(at.Add(-time.Duration(r.IntN(120)) * time.Minute))
	}
	return pick(r, "RZZ", "RZY"), d, at
}

func TestEvaluateAgreesWithTheRoutedEvent(t *testing.T) {
	api, router := setup(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		tenant, d, at := randomAlert(rng)
		// Given the AlertRaised the service would consume.
		ev := &eventsv1.Event{EventId: "e", AlertId: "a", Tenant: tenant, OccurredAt: timestamppb.New(at),
			Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: d}}}
		// When the router decides it and Evaluate is asked for the same alert and instant.
		routed, _, err := router.Decide(ev)
		require.NoError(t, err)
		resp, err := api.Evaluate(context.Background(), &rulesv1.EvaluateRequest{Tenant: tenant, Details: d, At: timestamppb.New(at)})
		require.NoError(t, err)
		// Then they agree, down to the envelope's policy reference.
		require.True(t, proto.Equal(routed.GetAlertRouted(), resp.GetRouted()), "case %d: got %v, want %v", i, resp.GetRouted(), routed.GetAlertRouted())
		require.True(t, proto.Equal(routed.GetPolicy(), resp.GetRouted().GetPolicy().GetRef()))
	}
}

func TestRequestValidation(t *testing.T) {
	api, _ := setup(t)
	ctx := context.Background()
	cases := []struct {
		name  string
		call  func() error
		field string
	}{
		{"evaluate tenant", func() error { _, err := api.Evaluate(ctx, &rulesv1.EvaluateRequest{}); return err }, "tenant"},
		{"evaluate at", func() error {
			_, err := api.Evaluate(ctx, &rulesv1.EvaluateRequest{Tenant: "RZZ", At: &timestamppb.Timestamp{Nanos: -1}})
			return err
		}, "at"},
		{"resolve targets", func() error {
			_, err := api.ResolveTargets(ctx, &rulesv1.ResolveTargetsRequest{Tenant: "RZZ"})
			return err
		}, "targets"},
		{"resolve target kind", func() error {
			_, err := api.ResolveTargets(ctx, &rulesv1.ResolveTargetsRequest{Tenant: "RZZ", Targets: []*eventsv1.Target{{}}})
			return err
		}, "targets[0].kind"},
		{"reachability hours", func() error {
			_, err := api.CheckReachability(ctx, &rulesv1.CheckReachabilityRequest{Tenant: "RZZ", Hours: 100000})
			return err
		}, "hours"},
		{"versions tenant", func() error { _, err := api.ListBundleVersions(ctx, &rulesv1.ListBundleVersionsRequest{}); return err }, "tenant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			require.ErrorIs(t, err, fault.ErrInvalid)
			require.Equal(t, tc.field, fault.Violations(err)[0].Field)
		})
	}
	_, err := api.CheckReachability(ctx, &rulesv1.CheckReachabilityRequest{Tenant: "RXX"})
	require.ErrorIs(t, err, fault.ErrNotFound)
	_, err = api.ResolveTargets(ctx, &rulesv1.ResolveTargetsRequest{Tenant: "RXX", Targets: []*eventsv1.Target{{Kind: eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER}}})
	require.ErrorIs(t, err, fault.ErrNotFound)
}

func TestEvaluateResponseCarriesTheTimelineAndUnreachedSends(t *testing.T) {
	reg := app.NewRegistry(time.Now)
	b, err := bundle.Parse([]bundle.File{{Name: "RZX/b.yaml", Content: []byte(`tenant: RZX
version: "1"
failsafe: {officer: fso, queue: q, policy: p, default_category: URGENT}
categories:
  - {code: CRITICAL, rank: 1, clocks: {acknowledge: 1h}, policy: p}
  - {code: URGENT, rank: 2, clocks: {acknowledge: 1h}, policy: p}
  - {code: CANCER, rank: 3, clocks: {acknowledge: 1h}, policy: p}
  - {code: SIGNIFICANT_UNEXPECTED, rank: 4, clocks: {acknowledge: 1h}, policy: p}
policies:
  - id: p
    steps:
      - {targets: [{kind: referrer}], timeout: 5m, repeats: 1, channels: [sms]}
      - {targets: [{kind: failsafe_officer}], timeout: 10m, channels: [sms, email]}
people:
  - {id: fso, contacts: [{channel: email, address: fso@rzx.example.nhs.uk}]}
`)}})
	require.NoError(t, err)
	_, err = reg.Activate(b, "test")
	require.NoError(t, err)
	api := grpcapi.New(reg, time.Now, logging.Discard(), nil, nil)
	at := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)
	resp, err := api.Evaluate(context.Background(), &rulesv1.EvaluateRequest{Tenant: "RZX", At: timestamppb.New(at),
		Details: &eventsv1.AlertDetails{SourceFlag: &eventsv1.SourceFlag{Category: eventsv1.Category_CATEGORY_CRITICAL}}})
	require.NoError(t, err)
	require.Equal(t, at.Add(20*time.Minute), resp.GetFailsafeAt().AsTime())
	require.Len(t, resp.GetTimeline(), 1)
	tl := resp.GetTimeline()[0]
	require.Equal(t, uint32(1), tl.GetStep())
	require.Equal(t, at.Add(10*time.Minute), tl.GetAt().AsTime())
	require.Equal(t, "fso", tl.GetRecipient().GetPersonId())
	require.Equal(t, []eventsv1.Channel{eventsv1.Channel_CHANNEL_EMAIL}, tl.GetChannels())
	require.Len(t, resp.GetUnreached(), 2)
	require.Equal(t, uint32(1), resp.GetUnreached()[1].GetRepeat())
	require.Equal(t, at.Add(5*time.Minute), resp.GetUnreached()[1].GetAt().AsTime())
	require.Equal(t, "target 0: the alert names no referrer", resp.GetUnreached()[1].GetProblem())
}
