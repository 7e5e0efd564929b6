// Package rulesclient implements app.Resolver with the rules service's
// ResolveTargets gRPC (herald.rules.v1).
package rulesclient

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/notification/internal/app"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// Client resolves targets through the rules service.
type Client struct {
	rules   rulesv1.RulesServiceClient
	timeout time.Duration
}

// New returns a resolver using c; each call is bounded by timeout.
func New(c rulesv1.RulesServiceClient, timeout time.Duration) *Client {
	return &Client{rules: c, timeout: timeout}
}

// Resolve implements app.Resolver.
func (c *Client) Resolve(ctx context.Context, a domain.Alert, step domain.Step, at time.Time) ([]app.Recipient, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req := &rulesv1.ResolveTargetsRequest{Tenant: a.Tenant, AlertId: a.ID, At: timestamppb.New(at)}
	for _, t := range step.Targets {
		req.Targets = append(req.Targets, &eventsv1.Target{Kind: t.Kind, Ref: t.Ref, Tenant: t.Tenant})
	}
	if a.Referrer.ID != "" {
		req.Referrer = &eventsv1.Clinician{Id: a.Referrer.ID, IdSystem: a.Referrer.System, Team: a.Referrer.Team}
	}
	resp, err := c.rules.ResolveTargets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("resolve targets of step %d of alert %s: %w", step.Index, a.ID, err)
	}
	out := make([]app.Recipient, 0, len(resp.GetRecipients()))
	for _, r := range resp.GetRecipients() {
		rec := app.Recipient{PersonID: r.GetRecipient().GetPersonId(), Role: r.GetRecipient().GetRole(), Tenant: r.GetRecipient().GetTenant()}
		if rec.PersonID == "" {
			continue
		}
		for _, p := range r.GetContactPoints() {
			rec.Points = append(rec.Points, domain.ContactPoint{Channel: p.GetChannel(), Address: p.GetAddress()})
		}
		out = append(out, rec)
	}
	return out, nil
}
