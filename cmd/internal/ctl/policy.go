package ctl

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
)

func policyCommand() command {
	return command{
		name:    "policy",
		summary: "validate a policy bundle, or evaluate who would be contacted and when",
		usage: `heraldctl policy validate DIR|FILE: check a trust's bundle (a directory of YAML files, or one) without loading it.
heraldctl policy evaluate -tenant RZZ -category critical [-at 2026-12-24T03:00:00Z] [-referrer ID]:
  the planned timeline for such an alert at that instant: who is contacted when, and through what.

  heraldctl policy validate services/rules/bundles/demo/RZZ
  heraldctl policy evaluate -tenant RZZ -category critical -at 2026-12-25T03:00:00Z
`,
		run: runPolicy,
	}
}

func runPolicy(ctx context.Context, e *env, args []string) error {
	c := policyCommand()
	if len(args) == 0 {
		return fmt.Errorf("say validate or evaluate; see heraldctl help policy")
	}
	fs := newFlags(c, e)
	addr := fs.String("addr", e.addrs.rules, "rules gRPC address")
	tenant := fs.String("tenant", "RZZ", "trust ODS code (evaluate)")
	category := fs.String("category", "critical", "the source's flag (evaluate)")
	at := fs.String("at", "", "instant, RFC 3339 (evaluate; default now)")
	referrer := fs.String("referrer", "", "referrer id (evaluate)")
	patientClass := fs.String("patient-class", "E", "patient class (evaluate)")
	modality := fs.String("modality", "CT", "modality (evaluate)")
	ctx, client, done, err := openRules(ctx, e, fs, addr, args[1:])
	if err != nil {
		return err
	}
	defer done()
	switch args[0] {
	case "validate":
		dir, files, err := bundleArg(fs)
		if err != nil {
			return err
		}
		resp, err := client.ValidateBundle(ctx, &rulesv1.ValidateBundleRequest{Files: files})
		if err != nil {
			return err
		}
		if len(resp.GetProblems()) == 0 {
			fmt.Fprintf(e.out, "bundle %s is valid (version %s, hash %s)\n", dir, resp.GetRef().GetVersion(), resp.GetRef().GetContentHash())
			return nil
		}
		for _, p := range resp.GetProblems() {
			fmt.Fprintf(e.out, "%s: %s: %s\n", p.GetFile(), p.GetPath(), p.GetProblem())
		}
		return fmt.Errorf("bundle %s has %d problems", dir, len(resp.GetProblems()))
	case "evaluate":
		cat, ok := categories[strings.ToLower(*category)]
		if !ok {
			return fmt.Errorf("-category %q is not one of critical, urgent, significant, cancer", *category)
		}
		instant := time.Now()
		if *at != "" {
			if instant, err = time.Parse(time.RFC3339, *at); err != nil {
				return fmt.Errorf("-at %q is not an RFC 3339 time such as 2026-12-25T03:00:00Z", *at)
			}
		}
		resp, err := client.Evaluate(ctx, &rulesv1.EvaluateRequest{Tenant: *tenant, At: timestamppb.New(instant), Details: &eventsv1.AlertDetails{
			SourceFlag:   &eventsv1.SourceFlag{Category: cat},
			ReportStatus: eventsv1.ReportStatus_REPORT_STATUS_FINAL,
			Referrer:     &eventsv1.Clinician{Id: *referrer},
			Encounter:    &eventsv1.Encounter{PatientClass: *patientClass},
			Exam:         &eventsv1.Exam{Modality: *modality},
		}})
		if err != nil {
			return err
		}
		r := resp.GetRouted()
		fmt.Fprintf(e.out, "category %s, policy %s version %s\n", categoryName(r.GetCategory()), r.GetPolicy().GetRef().GetPolicyId(), r.GetPolicy().GetRef().GetVersion())
		fmt.Fprintf(e.out, "deadlines: communicate %s, acknowledge %s, action %s\n\n", when(r.GetClocks().GetCommunicateBy()), when(r.GetClocks().GetAcknowledgeBy()), when(r.GetClocks().GetActionBy()))
		tw := tabwriter.NewWriter(e.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tSTEP\tREPEAT\tPERSON\tROLE\tCHANNELS")
		for _, p := range resp.GetTimeline() {
			var chans []string
			for _, ch := range p.GetChannels() {
				chans = append(chans, channel(ch))
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", when(p.GetAt()), p.GetStep(), p.GetRepeat(), p.GetRecipient().GetPersonId(), p.GetRecipient().GetRole(), strings.Join(chans, ","))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(e.out, "\nunacknowledged, it reaches the fail-safe queue at %s\n", when(resp.GetFailsafeAt()))
		return nil
	}
	return fmt.Errorf("unknown policy subcommand %q: say validate or evaluate", args[0])
}
