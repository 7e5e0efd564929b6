package web

import (
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/identity"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/console/internal/oidcauth"
)

// approvalsData is the policy page's pending bundle approvals of one trust
// (the rules service's change control, #20): each proposal, its dry run
// when asked for, and the approve and reject forms for a reviewer.
type approvalsData struct {
	// Reviewer: the person holds policy-admin or safety-lead for the trust
	// (the rules service decides; this only offers the forms).
	Reviewer  bool
	Pending   []pendingBundle
	Unlisted  string // why the list could not be shown, if it could not
	DryRun    *rulesv1.DryRunBundleResponse
	DryRunFor string // the content hash the dry run is of
	Done      string // approved, rejected
	Problem   string
}

type pendingBundle struct {
	P *rulesv1.BundleProposal
	// Mine: the signed-in person proposed it (the two-person rule lets
	// them withdraw it, not approve it).
	Mine bool
}

// dryRunDays is how far back a proposal's dry run replays the trust's alerts.
const dryRunDays = 7

// approvals fills the pending approvals of trust (errors become a line on
// the page: the dry run of "who is contacted" still works without them).
func (s *Server) approvals(r *http.Request, sess *oidcauth.Session, trust string) approvalsData {
	p := sess.Person()
	d := approvalsData{Reviewer: p.Has(trust, identity.RolePolicyAdmin) || p.Has(trust, identity.RoleSafetyLead)}
	if !d.Reviewer {
		return d
	}
	q := r.URL.Query()
	if done := q.Get("done"); done == "approved" || done == "rejected" {
		d.Done = done
	}
	resp, err := s.rules.ListPendingBundles(r.Context(), &rulesv1.ListPendingBundlesRequest{Tenant: trust}, s.callOpts(sess)...)
	if err != nil {
		d.Unlisted = "The pending approvals could not be listed: " + reviewError(err)
		return d
	}
	for _, b := range resp.GetProposals() {
		d.Pending = append(d.Pending, pendingBundle{P: b, Mine: proposedBy(b, sess)})
	}
	if hash := q.Get("dryrun"); hash != "" {
		run, err := s.rules.DryRunBundle(r.Context(), &rulesv1.DryRunBundleRequest{Tenant: trust, ContentHash: hash, Days: dryRunDays}, s.callOpts(sess)...)
		if err != nil {
			d.Problem = "The dry run could not be done: " + reviewError(err)
		} else {
			d.DryRun, d.DryRunFor = run, hash
		}
	}
	return d
}

func proposedBy(b *rulesv1.BundleProposal, sess *oidcauth.Session) bool {
	pp := b.GetProposer()
	return (pp.GetPersonId() != "" && pp.GetPersonId() == sess.PersonID) || (pp.GetSubject() != "" && pp.GetSubject() == sess.PersonID)
}

// reviewError says why the rules service refused, in words for the page:
// the two-person rule plainly, other refusals by their message (the rules
// service's messages name no patient data).
func reviewError(err error) string {
	st := status.Convert(err)
	switch {
	case st.Code() == codes.PermissionDenied && strings.Contains(st.Message(), "two-person rule"):
		return "you proposed this bundle, so you may not approve it (the two-person rule). A second policy administrator or safety lead of the trust must approve it; you may withdraw it."
	case st.Code() == codes.PermissionDenied:
		return "your role does not allow you to review this trust's policy bundles."
	case st.Code() == codes.InvalidArgument, st.Code() == codes.FailedPrecondition, st.Code() == codes.NotFound, st.Code() == codes.AlreadyExists:
		return st.Message()
	}
	return "the rules service did not answer. Try again in a minute."
}

// reviewBundle approves or rejects a pending proposal: POST /policy/approve
// or /policy/reject with the trust, the content hash and (reject) a reason.
func (s *Server) reviewBundle(approve bool) handler {
	return func(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session) {
		trust, _, ok := trustParam(r, sess.Person(), identity.RolePolicyAdmin, identity.RoleSafetyLead)
		if !ok || s.rules == nil {
			s.forbidden(w, r, sess)
			return
		}
		hash := strings.TrimSpace(r.PostFormValue("content_hash"))
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		var err error
		done := "approved"
		switch {
		case hash == "":
			s.policyProblem(w, r, sess, trust, "Select the bundle to review (content_hash is missing)")
			return
		case !approve && reason == "":
			s.policyProblem(w, r, sess, trust, "Say why you are rejecting this bundle")
			return
		case approve:
			_, err = s.rules.ApproveBundle(r.Context(), &rulesv1.ApproveBundleRequest{Tenant: trust, ContentHash: hash}, s.callOpts(sess)...)
		default:
			done = "rejected"
			_, err = s.rules.RejectBundle(r.Context(), &rulesv1.RejectBundleRequest{Tenant: trust, ContentHash: hash, Reason: reason}, s.callOpts(sess)...)
		}
		if err != nil {
			if status.Code(err) == codes.Unauthenticated {
				s.fail(w, r, sess, err)
				return
			}
			verb := "approved"
			if !approve {
				verb = "rejected"
			}
			s.policyProblem(w, r, sess, trust, "The bundle was not "+verb+": "+reviewError(err))
			return
		}
		// Post/redirect/get: a reload does not repeat the review.
		http.Redirect(w, r, "/policy?"+url.Values{"trust": {trust}, "done": {done}}.Encode()+"#approvals", http.StatusSeeOther)
	}
}

// policyProblem shows the policy page with a problem at its approvals.
func (s *Server) policyProblem(w http.ResponseWriter, r *http.Request, sess *oidcauth.Session, trust, msg string) {
	r.URL.RawQuery = url.Values{"trust": {trust}}.Encode()
	d := s.policyPage(r, sess, trust, nil)
	d.Approvals.Problem = msg
	s.render(w, r, http.StatusBadRequest, "policy", page{Title: "Who is contacted", Session: sess, Data: d})
}
