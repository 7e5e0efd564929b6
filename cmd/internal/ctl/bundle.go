package ctl

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
)

func bundleCommand() command {
	return command{
		name:    "bundle",
		summary: "propose, review and dry-run policy bundles (two-person rule)",
		usage: `heraldctl bundle propose FILE|DIR: propose a trust's bundle (a YAML file, or a directory of them).
  It is recorded with you as its proposer and is NOT in force until a second person approves it.
heraldctl bundle pending [TRUST]: the proposals awaiting review, with their content hashes.
heraldctl bundle approve TRUST HASH: approve a proposal; you must hold policy-admin or
  safety-lead for the trust and must not be its proposer. It is then in force.
heraldctl bundle reject TRUST HASH -reason TEXT: refuse a proposal (withdraw it, if it is yours).
heraldctl bundle dry-run FILE|DIR [-days N] [-all], or dry-run -tenant TRUST -hash HASH:
  which alerts of the last N days would have been routed differently, and to whom.

Every subcommand acts as the person of your access token (heraldctl login).

  heraldctl bundle propose services/rules/bundles/demo/RZY
  heraldctl bundle dry-run services/rules/bundles/demo/RZY -days 14
  heraldctl bundle approve RZY 3f5a...e1
`,
		run: runBundle,
	}
}

func runBundle(ctx context.Context, e *env, args []string) error {
	c := bundleCommand()
	if len(args) == 0 {
		return usageError("say propose, pending, approve, reject or dry-run")
	}
	fs := newFlags(c, e)
	addr := fs.String("addr", e.addrs.rules, "rules gRPC address")
	tenant := fs.String("tenant", "", "trust ODS code (pending, dry-run of a proposal)")
	hash := fs.String("hash", "", "content hash of a proposal (dry-run)")
	days := fs.Uint("days", 7, "how many days of alerts to replay (dry-run; at most 90)")
	all := fs.Bool("all", false, "list the alerts that would not change too (dry-run)")
	reason := fs.String("reason", "", "why the proposal is refused (reject)")
	ctx, client, done, err := openRules(ctx, e, fs, addr, args[1:])
	if err != nil {
		return err
	}
	defer done()
	switch args[0] {
	case "propose":
		_, files, err := bundleArg(fs)
		if err != nil {
			return err
		}
		resp, err := client.ProposeBundle(ctx, &rulesv1.ProposeBundleRequest{Files: files})
		if err != nil {
			return err
		}
		p := resp.GetProposal()
		fmt.Fprintf(e.out, "proposed bundle %s version %s (hash %s) by %s; NOT in force until a second person approves it:\n  heraldctl bundle approve %s %s\n",
			p.GetTenant(), p.GetRef().GetVersion(), p.GetRef().GetContentHash(), person(p.GetProposer()), p.GetTenant(), p.GetRef().GetContentHash())
		return nil
	case "pending":
		t := *tenant
		if fs.NArg() == 1 {
			t = fs.Arg(0)
		}
		if t == "" || fs.NArg() > 1 {
			return usageError("give the trust: heraldctl bundle pending TRUST")
		}
		resp, err := client.ListPendingBundles(ctx, &rulesv1.ListPendingBundlesRequest{Tenant: t})
		if err != nil {
			return err
		}
		if len(resp.GetProposals()) == 0 {
			fmt.Fprintf(e.out, "no bundle of %s awaits review\n", t)
			return nil
		}
		tw := tabwriter.NewWriter(e.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tHASH\tPROPOSED BY\tAT")
		for _, p := range resp.GetProposals() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.GetRef().GetVersion(), p.GetRef().GetContentHash(), person(p.GetProposer()), when(p.GetProposedAt()))
		}
		return tw.Flush()
	case "approve", "reject":
		if fs.NArg() != 2 {
			return usageError(fmt.Sprintf("give the trust and the content hash: heraldctl bundle %s TRUST HASH", args[0]))
		}
		t, h := fs.Arg(0), fs.Arg(1)
		if args[0] == "reject" {
			resp, err := client.RejectBundle(ctx, &rulesv1.RejectBundleRequest{Tenant: t, ContentHash: h, Reason: *reason})
			if err != nil {
				return err
			}
			p := resp.GetProposal()
			fmt.Fprintf(e.out, "bundle %s version %s %s by %s\n", p.GetTenant(), p.GetRef().GetVersion(), outcome(p.GetOutcome()), person(p.GetReviewer()))
			return nil
		}
		resp, err := client.ApproveBundle(ctx, &rulesv1.ApproveBundleRequest{Tenant: t, ContentHash: h})
		if err != nil {
			return err
		}
		p := resp.GetProposal()
		state := "in force"
		if !resp.GetActive() {
			state = "approved; every replica puts it in force within its poll interval"
		}
		fmt.Fprintf(e.out, "bundle %s version %s proposed by %s, approved by %s: %s\n", p.GetTenant(), p.GetRef().GetVersion(),
			person(p.GetProposer()), person(p.GetReviewer()), state)
		return nil
	case "dry-run":
		req := &rulesv1.DryRunBundleRequest{Days: uint32(*days), IncludeUnchanged: *all, Tenant: *tenant, ContentHash: *hash}
		if fs.NArg() == 1 {
			if _, req.Files, err = bundleArg(fs); err != nil {
				return err
			}
		} else if fs.NArg() > 1 || *tenant == "" || *hash == "" {
			return usageError("give a bundle file or directory, or -tenant and -hash of a proposal")
		}
		resp, err := client.DryRunBundle(ctx, req)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.out, "bundle version %s replayed over the routings since %s: %d routed, %d would change\n",
			resp.GetProposed().GetVersion(), when(resp.GetSince()), resp.GetReplayed(), resp.GetChanged())
		for _, a := range resp.GetAlerts() {
			fmt.Fprintf(e.out, "\nalert %s (%s, %s at %s) under %s:\n", a.GetAlertId(), a.GetTenant(), a.GetCause(), when(a.GetRoutedAt()),
				a.GetCurrent().GetPolicy().GetVersion())
			if !a.GetChanged() {
				fmt.Fprintln(e.out, "  unchanged")
			}
			for _, d := range a.GetDifferences() {
				fmt.Fprintf(e.out, "  %s\n", d)
			}
			fmt.Fprintf(e.out, "  first step: %s -> %s\n", recipients(a.GetCurrent().GetFirstStepRecipients()), recipients(a.GetProposed().GetFirstStepRecipients()))
		}
		return nil
	}
	return usageError(fmt.Sprintf("unknown bundle subcommand %q: say propose, pending, approve, reject or dry-run", args[0]))
}

func person(p *eventsv1.PolicyPerson) string {
	switch {
	case p == nil:
		return "-"
	case p.GetPersonId() != "":
		return p.GetPersonId()
	default:
		return p.GetSubject()
	}
}

func outcome(o eventsv1.BundleReviewOutcome) string {
	return strings.ToLower(strings.TrimPrefix(o.String(), "BUNDLE_REVIEW_OUTCOME_"))
}

func recipients(rs []*eventsv1.Recipient) string {
	if len(rs) == 0 {
		return "[]"
	}
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.GetPersonId()
	}
	return "[" + strings.Join(ids, ", ") + "]"
}
