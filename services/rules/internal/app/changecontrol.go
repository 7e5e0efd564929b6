package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/identity"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// MaxProposalBytes bounds the files of one proposed bundle: the proposal is
// one record of the policy-bundle topic (Kafka's default limit is 1 MiB).
const MaxProposalBytes = 768 << 10

// BundleLog is the durable record of policy changes (the policy-bundle
// topic): BundleProposed and BundleReviewed events in one order.
type BundleLog interface {
	// Append returns once ev is durable; an error wrapping
	// fault.ErrUnavailable may be retried (the id is deterministic).
	Append(ctx context.Context, ev *eventsv1.Event) error
	// ReadFrom calls fn for each event from offset from up to the end the
	// log has when called, in order, and returns the next offset.
	ReadFrom(ctx context.Context, from int64, fn func(ev *eventsv1.Event, offset int64)) (int64, error)
}

// ErrAwaitingApproval marks a bundle of the directory that is not in force
// because no second person approved its content (production profile).
var ErrAwaitingApproval = errors.New("awaiting approval")

// Proposal is a proposed bundle and what became of it.
type Proposal struct {
	EventID    string
	Tenant     string
	Version    string
	Hash       string
	Round      uint32
	Proposer   *eventsv1.PolicyPerson
	ProposedAt time.Time
	Files      []bundle.File
	// Outcome is BUNDLE_REVIEW_OUTCOME_UNSPECIFIED while pending.
	Outcome    eventsv1.BundleReviewOutcome
	Reviewer   *eventsv1.PolicyPerson
	ReviewedAt time.Time
	// reviewOffset orders approvals: the latest approval of a trust in the
	// log is its bundle in force.
	reviewOffset int64
}

// Pending reports whether the proposal awaits review.
func (p Proposal) Pending() bool {
	return p.Outcome == eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_UNSPECIFIED
}

// ChangeControl is policy change control (two-person rule): a bundle loaded
// through the API is only proposed; a second, different person holding
// policy-admin or safety-lead for the trust approves it, and only then is it
// in force. Proposals and reviews are events on the policy-bundle topic;
// every replica builds the same ledger from it and activates the latest
// approved bundle of each trust, so a replica that dies between the
// approval and the activation loses nothing: the others (and it, after a
// restart) converge on the log.
type ChangeControl struct {
	log      BundleLog
	registry *Registry
	now      func() time.Time
	logger   *slog.Logger

	refresh sync.Mutex // one read of the log at a time
	apply   sync.Mutex // one Apply at a time: when it returns, what it saw is in force
	mu      sync.Mutex
	next    int64
	byID    map[string]*Proposal
	rounds  map[string][]*Proposal // tenant "/" hash -> rounds in order
	order   []*Proposal
	latest  map[string]*Proposal // tenant -> latest approved
	applied map[string]string    // tenant -> event id of the approval put in force here
}

// NewChangeControl returns change control over log, activating approved
// bundles in registry.
func NewChangeControl(log BundleLog, registry *Registry, now func() time.Time, logger *slog.Logger) *ChangeControl {
	return &ChangeControl{log: log, registry: registry, now: now, logger: logger,
		byID: map[string]*Proposal{}, rounds: map[string][]*Proposal{}, latest: map[string]*Proposal{}, applied: map[string]string{}}
}

// ProposalEventID is the deterministic id of the round-th BundleProposed of
// a trust's bundle content.
func ProposalEventID(tenant, hash string, round uint32) string {
	return eventlog.ID("policy-bundle", tenant, hash, strconv.FormatUint(uint64(round), 10), "proposed")
}

// ReviewEventID is the deterministic id of the review of that proposal:
// approval, rejection and withdrawal share it, so the first in the log
// decides and a repeat is recognisable.
func ReviewEventID(tenant, hash string, round uint32) string {
	return eventlog.ID("policy-bundle", tenant, hash, strconv.FormatUint(uint64(round), 10), "reviewed")
}

// Refresh reads the policy-bundle log from where the last read ended.
func (c *ChangeControl) Refresh(ctx context.Context) error {
	c.refresh.Lock()
	defer c.refresh.Unlock()
	c.mu.Lock()
	from := c.next
	c.mu.Unlock()
	next, err := c.log.ReadFrom(ctx, from, c.observe)
	c.mu.Lock()
	c.next = max(c.next, next)
	c.mu.Unlock()
	if err != nil {
		return fault.Unavailable(fmt.Sprintf("read the policy-bundle log: %v", err))
	}
	return nil
}

// observe applies one event of the log to the ledger. It is idempotent: an
// event id seen before changes nothing, and the first review of a proposal
// decides it.
func (c *ChangeControl) observe(ev *eventsv1.Event, offset int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_BundleProposed:
		if _, seen := c.byID[ev.GetEventId()]; seen {
			return
		}
		bp := p.BundleProposed
		prop := &Proposal{EventID: ev.GetEventId(), Tenant: ev.GetTenant(), Version: bp.GetRef().GetVersion(), Hash: bp.GetRef().GetContentHash(),
			Round: bp.GetRound(), Proposer: bp.GetProposer(), ProposedAt: ev.GetOccurredAt().AsTime()}
		for _, f := range bp.GetFiles() {
			prop.Files = append(prop.Files, bundle.File{Name: f.GetName(), Content: f.GetContent()})
		}
		c.byID[prop.EventID] = prop
		key := prop.Tenant + "/" + prop.Hash
		c.rounds[key] = append(c.rounds[key], prop)
		c.order = append(c.order, prop)
	case *eventsv1.Event_BundleReviewed:
		prop, ok := c.byID[ev.GetCausationId()]
		if !ok || !prop.Pending() {
			return // a review of an unknown proposal, or a later review of a decided one
		}
		br := p.BundleReviewed
		prop.Outcome, prop.Reviewer, prop.ReviewedAt, prop.reviewOffset = br.GetOutcome(), br.GetReviewer(), ev.GetOccurredAt().AsTime(), offset
		if prop.Outcome == eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_APPROVED {
			if cur, ok := c.latest[prop.Tenant]; !ok || cur.reviewOffset < offset {
				c.latest[prop.Tenant] = prop
			}
		}
	}
}

// Sync reads the log and puts every newly approved bundle in force.
func (c *ChangeControl) Sync(ctx context.Context) error {
	if err := c.Refresh(ctx); err != nil {
		return err
	}
	c.Apply(ctx)
	return nil
}

// Apply activates, for every trust, the latest approved bundle in the log
// unless this replica already did. It is edge-triggered: an approval is
// put in force once, so a bundle activated later from the directory (the
// development profile) is not overridden until the next approval.
func (c *ChangeControl) Apply(ctx context.Context) {
	c.apply.Lock()
	defer c.apply.Unlock()
	c.mu.Lock()
	var due []*Proposal
	for tenant, p := range c.latest {
		if c.applied[tenant] != p.EventID {
			due = append(due, p)
			c.applied[tenant] = p.EventID
		}
	}
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].Tenant < due[j].Tenant })
	for _, p := range due {
		b, err := bundle.Parse(p.Files)
		if err == nil {
			var changed bool
			changed, err = c.registry.Activate(b, "approved:"+p.EventID)
			if err == nil && changed {
				c.logger.InfoContext(ctx, "policy bundle activated", "tenant", b.Tenant, "version", b.Version, "content_hash", b.Hash,
					"source", "approved", "proposer", p.Proposer.GetSubject(), "approver", p.Reviewer.GetSubject())
			}
		}
		if err != nil {
			c.logger.ErrorContext(ctx, "approved policy bundle could not be activated; the bundle in force stays", "tenant", p.Tenant,
				"version", p.Version, "content_hash", p.Hash, "error", err.Error())
		}
	}
}

// Approved reports whether a bundle content of the trust was approved by a
// second person (any round).
func (c *ChangeControl) Approved(tenant, hash string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.rounds[tenant+"/"+hash] {
		if p.Outcome == eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_APPROVED {
			return true
		}
	}
	return false
}

// Gate is the loader's check of a directory bundle in the production
// profile: its content must have been approved.
func (c *ChangeControl) Gate(b *bundle.Bundle) error {
	if c.Approved(b.Tenant, b.Hash) {
		return nil
	}
	return fmt.Errorf("bundle %s version %s (content hash %s) was not approved by a second person: propose it (heraldctl bundle propose) and have it approved: %w",
		b.Tenant, b.Version, b.Hash, ErrAwaitingApproval)
}

// last returns a copy of the latest round of a trust's bundle content.
func (c *ChangeControl) last(tenant, hash string) (Proposal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.rounds[tenant+"/"+hash]
	if len(rs) == 0 {
		return Proposal{}, false
	}
	return *rs[len(rs)-1], true
}

func (c *ChangeControl) byEventID(id string) (Proposal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.byID[id]
	if !ok {
		return Proposal{}, false
	}
	return *p, true
}

// Pending lists the trust's proposals awaiting review, oldest first.
func (c *ChangeControl) Pending(ctx context.Context, caller identity.Caller, tenant string) ([]Proposal, error) {
	if _, err := policyPerson(caller, tenant); err != nil {
		return nil, err
	}
	if err := c.Refresh(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Proposal
	for _, p := range c.order {
		if p.Tenant == tenant && p.Pending() {
			out = append(out, *p)
		}
	}
	return out, nil
}

// Authorize checks that the caller may work on the trust's policy
// (policy-admin or safety-lead): dry runs.
func (c *ChangeControl) Authorize(caller identity.Caller, tenant string) error {
	_, err := policyPerson(caller, tenant)
	return err
}

// Find returns the latest round of a trust's bundle content, with the
// caller checked as for a review (dry-running a proposal by its hash).
func (c *ChangeControl) Find(ctx context.Context, caller identity.Caller, tenant, hash string) (Proposal, error) {
	if _, err := policyPerson(caller, tenant); err != nil {
		return Proposal{}, err
	}
	if err := c.Refresh(ctx); err != nil {
		return Proposal{}, err
	}
	p, ok := c.last(tenant, hash)
	if !ok {
		return Proposal{}, fault.NotFound(fmt.Sprintf("no bundle of trust %s with content hash %s was proposed", tenant, hash))
	}
	return p, nil
}

// Propose records b as proposed by the calling person. It is not in force.
// Proposing content already pending returns that proposal (a retry, or the
// same bundle proposed twice) without a new event.
func (c *ChangeControl) Propose(ctx context.Context, caller identity.Caller, b *bundle.Bundle) (Proposal, error) {
	person, err := policyPerson(caller, b.Tenant)
	if err != nil {
		return Proposal{}, err
	}
	size := 0
	for _, f := range b.Files {
		size += len(f.Name) + len(f.Content)
	}
	if size > MaxProposalBytes {
		return Proposal{}, fault.Invalid("invalid policy bundle", fault.Violation{Field: "files",
			Problem: fmt.Sprintf("the bundle is %d bytes; at most %d may be proposed", size, MaxProposalBytes)})
	}
	if err := c.registry.Check(b); err != nil {
		return Proposal{}, err
	}
	if err := c.Refresh(ctx); err != nil {
		return Proposal{}, err
	}
	if active, ok := c.registry.Snapshot().Bundle(b.Tenant); ok && active.Hash == b.Hash {
		return Proposal{}, fault.Precondition(fmt.Sprintf("bundle %s version %s (content hash %s) is already in force", b.Tenant, b.Version, b.Hash))
	}
	c.mu.Lock()
	for _, p := range c.order {
		if p.Tenant == b.Tenant && p.Version == b.Version && p.Hash != b.Hash &&
			(p.Pending() || p.Outcome == eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_APPROVED) {
			c.mu.Unlock()
			return Proposal{}, &bundle.ValidationError{Problems: []bundle.Problem{{File: b.VersionFile, Path: "version",
				Problem: fmt.Sprintf("version %q of %s is already proposed with different content: give the changed bundle a new version", b.Version, b.Tenant)}}}
		}
	}
	rs := c.rounds[b.Tenant+"/"+b.Hash]
	c.mu.Unlock()
	if n := len(rs); n > 0 && rs[n-1].Pending() {
		return *rs[n-1], nil
	}
	round := uint32(len(rs) + 1)
	ref := &eventsv1.PolicyRef{Version: b.Version, ContentHash: b.Hash}
	proposed := &eventsv1.BundleProposed{Ref: ref, Proposer: person, Round: round}
	for _, f := range b.Files {
		proposed.Files = append(proposed.Files, &eventsv1.PolicyBundleFile{Name: f.Name, Content: f.Content})
	}
	id := ProposalEventID(b.Tenant, b.Hash, round)
	ev := &eventsv1.Event{EventId: id, Tenant: b.Tenant, OccurredAt: timestamppb.New(c.now()), Producer: Producer, Policy: ref,
		Payload: &eventsv1.Event_BundleProposed{BundleProposed: proposed}}
	if err := c.log.Append(ctx, ev); err != nil {
		return Proposal{}, fmt.Errorf("record the proposal of bundle %s version %s: %w", b.Tenant, b.Version, err)
	}
	if err := c.Refresh(ctx); err != nil {
		return Proposal{}, err
	}
	p, ok := c.byEventID(id)
	if !ok {
		return Proposal{}, fault.Unavailable(fmt.Sprintf("the proposal of bundle %s version %s was recorded but is not readable yet: retry", b.Tenant, b.Version))
	}
	c.logger.InfoContext(ctx, "policy bundle proposed; not in force until a second person approves it", "tenant", b.Tenant, "version", b.Version,
		"content_hash", b.Hash, "proposer", p.Proposer.GetSubject(), "round", p.Round)
	return p, nil
}

// Approve puts the trust's proposed bundle with this content hash in force.
// The caller must hold policy-admin or safety-lead for the trust and must
// not be its proposer (two-person rule). Approving again by the same
// approver returns the approval (a retry).
func (c *ChangeControl) Approve(ctx context.Context, caller identity.Caller, tenant, hash string) (Proposal, bool, error) {
	p, person, err := c.reviewable(ctx, caller, tenant, hash)
	if err != nil {
		return Proposal{}, false, err
	}
	if p.Outcome == eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_APPROVED && samePerson(p.Reviewer, person) {
		c.Apply(ctx)
		return p, c.active(tenant, hash), nil
	}
	if !p.Pending() {
		return Proposal{}, false, decided(p)
	}
	if samePerson(p.Proposer, person) {
		return Proposal{}, false, fault.PermissionDenied(fmt.Sprintf(
			"two-person rule: %s proposed bundle %s version %s and may not approve it; a second person holding policy-admin or safety-lead for %s must",
			who(person), tenant, p.Version, tenant))
	}
	b, err := bundle.Parse(p.Files)
	if err == nil {
		err = c.registry.Check(b)
	}
	if err != nil {
		return Proposal{}, false, fault.Precondition(fmt.Sprintf("bundle %s version %s can no longer be activated: %v", tenant, p.Version, err))
	}
	if err := c.review(ctx, p, person, eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_APPROVED, ""); err != nil {
		return Proposal{}, false, err
	}
	done, _ := c.byEventID(p.EventID)
	c.Apply(ctx)
	c.logger.InfoContext(ctx, "policy bundle approved", "tenant", tenant, "version", p.Version, "content_hash", hash,
		"proposer", p.Proposer.GetSubject(), "approver", person.GetSubject())
	return done, c.active(tenant, hash), nil
}

// Reject refuses the trust's proposed bundle with this content hash; by
// its proposer, it is withdrawn. A reason is required.
func (c *ChangeControl) Reject(ctx context.Context, caller identity.Caller, tenant, hash, reason string) (Proposal, error) {
	if reason == "" {
		return Proposal{}, fault.Invalid("invalid request", fault.Violation{Field: "reason", Problem: "is required: why the bundle is refused"})
	}
	p, person, err := c.reviewable(ctx, caller, tenant, hash)
	if err != nil {
		return Proposal{}, err
	}
	outcome := eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_REJECTED
	if samePerson(p.Proposer, person) {
		outcome = eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_WITHDRAWN
	}
	if p.Outcome == outcome && samePerson(p.Reviewer, person) {
		return p, nil // a retry
	}
	if !p.Pending() {
		return Proposal{}, decided(p)
	}
	if err := c.review(ctx, p, person, outcome, reason); err != nil {
		return Proposal{}, err
	}
	done, _ := c.byEventID(p.EventID)
	c.logger.InfoContext(ctx, "policy bundle proposal refused", "tenant", tenant, "version", p.Version, "content_hash", hash,
		"outcome", outcome.String(), "reviewer", person.GetSubject())
	return done, nil
}

// reviewable checks the request and the caller, reads the log and returns
// the latest round of the trust's bundle content.
func (c *ChangeControl) reviewable(ctx context.Context, caller identity.Caller, tenant, hash string) (Proposal, *eventsv1.PolicyPerson, error) {
	var vs []fault.Violation
	if tenant == "" {
		vs = append(vs, fault.Violation{Field: "tenant", Problem: "is required: the trust's ODS code"})
	}
	if hash == "" {
		vs = append(vs, fault.Violation{Field: "content_hash", Problem: "is required: the SHA-256 of the proposed bundle (heraldctl bundle pending)"})
	}
	if vs != nil {
		return Proposal{}, nil, fault.Invalid("invalid request", vs...)
	}
	person, err := policyPerson(caller, tenant)
	if err != nil {
		return Proposal{}, nil, err
	}
	if err := c.Refresh(ctx); err != nil {
		return Proposal{}, nil, err
	}
	p, ok := c.last(tenant, hash)
	if !ok {
		return Proposal{}, nil, fault.Precondition(fmt.Sprintf("no bundle of trust %s with content hash %s was proposed: only a proposed bundle can be reviewed (heraldctl bundle pending lists them)", tenant, hash))
	}
	return p, person, nil
}

// review appends the review of p and reads it back: the first review of a
// proposal in the log decides it, so a concurrent review by someone else
// (on another replica) makes this one fail with what happened.
func (c *ChangeControl) review(ctx context.Context, p Proposal, person *eventsv1.PolicyPerson, outcome eventsv1.BundleReviewOutcome, reason string) error {
	ref := &eventsv1.PolicyRef{Version: p.Version, ContentHash: p.Hash}
	ev := &eventsv1.Event{EventId: ReviewEventID(p.Tenant, p.Hash, p.Round), Tenant: p.Tenant, OccurredAt: timestamppb.New(c.now()),
		Producer: Producer, Policy: ref, CausationId: p.EventID,
		Payload: &eventsv1.Event_BundleReviewed{BundleReviewed: &eventsv1.BundleReviewed{Ref: ref, Outcome: outcome, Reviewer: person,
			Proposer: p.Proposer, Round: p.Round, Reason: reason}}}
	if err := c.log.Append(ctx, ev); err != nil {
		return fmt.Errorf("record the review of bundle %s version %s: %w", p.Tenant, p.Version, err)
	}
	if err := c.Refresh(ctx); err != nil {
		return err
	}
	done, _ := c.byEventID(p.EventID)
	if done.Outcome != outcome || !samePerson(done.Reviewer, person) {
		if done.Pending() {
			return fault.Unavailable(fmt.Sprintf("the review of bundle %s version %s was recorded but is not readable yet: retry", p.Tenant, p.Version))
		}
		return decided(done)
	}
	return nil
}

func (c *ChangeControl) active(tenant, hash string) bool {
	b, ok := c.registry.Snapshot().Bundle(tenant)
	return ok && b.Hash == hash
}

func decided(p Proposal) error {
	what := map[eventsv1.BundleReviewOutcome]string{
		eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_APPROVED:  "approved",
		eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_REJECTED:  "rejected",
		eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_WITHDRAWN: "withdrawn",
	}[p.Outcome]
	return fault.Precondition(fmt.Sprintf("bundle %s version %s (content hash %s) was already %s by %s: propose it again to have it reviewed",
		p.Tenant, p.Version, p.Hash, what, who(p.Reviewer)))
}

// policyPerson is the calling person as recorded on a policy change, if
// they hold policy-admin or safety-lead for the trust.
func policyPerson(caller identity.Caller, tenant string) (*eventsv1.PolicyPerson, error) {
	p := caller.Person
	if p == nil || p.Subject == "" {
		return nil, fault.Unauthenticated("a policy change needs a verified person: call with a person's access token")
	}
	role := identity.RolePolicyAdmin
	if !p.Has(tenant, role) {
		role = identity.RoleSafetyLead
	}
	if !p.Has(tenant, role) {
		return nil, fault.PermissionDenied(fmt.Sprintf("%s holds neither %s nor %s for trust %s", whoOf(p), identity.RolePolicyAdmin, identity.RoleSafetyLead, tenant))
	}
	return &eventsv1.PolicyPerson{Issuer: p.Issuer, Subject: p.Subject, PersonId: p.PersonID, DisplayName: p.DisplayName,
		Role: string(role), Acr: p.ACR, Service: caller.Service}, nil
}

// samePerson reports whether a and b are one person: the same subject at
// the same issuer, or the same person of the trust directory (one person
// with two accounts is still one person).
func samePerson(a, b *eventsv1.PolicyPerson) bool {
	if a == nil || b == nil {
		return false
	}
	return (a.GetIssuer() == b.GetIssuer() && a.GetSubject() == b.GetSubject()) ||
		(a.GetPersonId() != "" && a.GetPersonId() == b.GetPersonId())
}

func who(p *eventsv1.PolicyPerson) string {
	if p.GetPersonId() != "" {
		return p.GetPersonId()
	}
	return p.GetSubject()
}

func whoOf(p *identity.Person) string {
	if p.PersonID != "" {
		return p.PersonID
	}
	return p.Subject
}
