package ctl

import (
	"context"
	"fmt"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/sealing"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

func keysCommand() command {
	return command{
		name:    "keys",
		summary: "the trusts' patient-data keys: create the KEK, rotate, list, destroy (crypto-shred)",
		usage: `heraldctl keys: the trusts' patient-data keys (platform/sealing; docs/design.md, "Patient data at rest").

  heraldctl keys kek -kek-file F                     write a new key-encryption key (refuses to overwrite)
  heraldctl keys rotate -keyring-file K -kek-file F TRUST
                                                     give TRUST a new data key and seal with it from now on
                                                     (its first key when it has none); older keys still open
  heraldctl keys list -keyring-file K                every trust's key ids, when created, when destroyed
  heraldctl keys destroy -keyring-file K -by PERSON -confirm TRUST [-key ID] TRUST
                                                     crypto-shred TRUST's keys (or one key): every sealed
                                                     patient detail under them, on the log and anywhere
                                                     else, can never be opened again. The destruction is
                                                     recorded in the trust's audit trail first
                                                     (DataKeyDestroyed, by PERSON).

The keyring file is the Secret the services mount (intake, console); update the Secret with the new file.
Nothing printed holds key material or patient data.
`,
		run: runKeys,
	}
}

func runKeys(ctx context.Context, e *env, args []string) error {
	c := keysCommand()
	if len(args) == 0 {
		return usageError("give a subcommand: kek, rotate, list or destroy")
	}
	sub, args := args[0], args[1:]
	fs := newFlags(c, e)
	var files sealing.Files
	files.RegisterFlags(fs)
	by := fs.String("by", "", "destroy: the person who decided the destruction (records manager), recorded in the audit trail")
	confirm := fs.String("confirm", "", "destroy: the trust again, to confirm an irreversible destruction")
	key := fs.String("key", "", "destroy: only this key id (default: every key of the trust)")
	brokers := config.StringList(strings.Split(e.addrs.kafka, ","))
	fs.Var(&brokers, "brokers", "Kafka brokers (destroy records to the audit trail)")
	eventsTopic := fs.String("events-topic", eventlog.TopicEvents, "the alert event log (its audit intake is recorded to)")
	intakeTopic := fs.String("intake-topic", "", "the audit intake (default: the one of -events-topic, "+audit.TopicIntake+")")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	switch sub {
	case "kek":
		if files.KEKFile == "" {
			return usageError("-kek-file is required")
		}
		if err := sealing.GenerateKEKFile(files.KEKFile); err != nil {
			return err
		}
		fmt.Fprintf(e.out, "wrote a new key-encryption key to %s\n", files.KEKFile)
		return nil
	case "rotate":
		trust, err := oneArg(fs, "trust (ODS code)")
		if err != nil {
			return err
		}
		if files.KeyringFile == "" || files.KEKFile == "" {
			return usageError("-keyring-file and -kek-file are required")
		}
		kek, err := sealing.LoadFileKEK(files.KEKFile)
		if err != nil {
			return err
		}
		id, err := sealing.Rotate(ctx, files.KeyringFile, kek, trust, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(e.out, "trust %s now seals with key %s\n", trust, id)
		return nil
	case "list":
		if files.KeyringFile == "" {
			return usageError("-keyring-file is required")
		}
		f, err := sealing.ReadFile(files.KeyringFile)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TRUST\tKEY\tCURRENT\tCREATED\tDESTROYED")
		for _, t := range f.TrustNames() {
			tk := f.Trusts[t]
			for _, k := range tk.Keys {
				destroyed := ""
				if k.Destroyed != nil {
					destroyed = k.Destroyed.Format(time.RFC3339) + " by " + k.DestroyedBy
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", t, k.ID, k.ID == tk.Current, k.Created.Format(time.RFC3339), destroyed)
			}
		}
		return tw.Flush()
	case "destroy":
		trust, err := oneArg(fs, "trust (ODS code)")
		if err != nil {
			return err
		}
		switch {
		case files.KeyringFile == "":
			return usageError("-keyring-file is required")
		case *by == "":
			return usageError("-by is required: the person who decided the destruction is recorded")
		case *confirm != trust:
			return usageError(fmt.Sprintf("destroying %s's keys cannot be undone: pass -confirm %s", trust, trust))
		}
		if *intakeTopic == "" {
			*intakeTopic = audit.TopicsFor(*eventsTopic).Intake
		}
		return destroyKeys(ctx, e, files.KeyringFile, trust, *key, *by, brokers, *eventsTopic, *intakeTopic)
	}
	return usageError(fmt.Sprintf("unknown keys subcommand %q: kek, rotate, list or destroy", sub))
}

// destroyKeys records the destruction in the trust's audit trail, durably,
// and then destroys the keys: a destruction is never unrecorded. A record
// without the destruction (the tool stopped in between) is repaired by
// running the command again (the record has the same id and is chained
// once).
func destroyKeys(ctx context.Context, e *env, keyring, trust, keyID, by string, brokers []string, eventsTopic, intakeTopic string) error {
	f, err := sealing.ReadFile(keyring)
	if err != nil {
		return err
	}
	tk := f.Trusts[trust]
	if tk == nil {
		return fmt.Errorf("trust %s has no keys in %s", trust, keyring)
	}
	var ids []string
	for _, k := range tk.Keys {
		if k.Destroyed == nil && (keyID == "" || k.ID == keyID) {
			ids = append(ids, k.ID)
		}
	}
	if len(ids) == 0 {
		fmt.Fprintf(e.out, "nothing to destroy: trust %s has no live key%s\n", trust, map[bool]string{true: " " + keyID}[keyID != ""])
		return nil
	}
	conn, err := net.DialTimeout("tcp", brokers[0], 3*time.Second)
	if err != nil {
		return fmt.Errorf("the Kafka broker %s is not reachable: the destruction must be recorded in the audit trail first; pass -brokers or set HERALD_CTL_KAFKA", brokers[0])
	}
	_ = conn.Close()
	cfg, err := kafkaConfig(brokers, eventsTopic)
	if err != nil {
		return err
	}
	w := eventlog.NewWriter(cfg, "heraldctl", nil)
	defer w.Close()
	wctx, cancel := timeout(ctx)
	defer cancel()
	entry := audit.KeyDestroyedEntry(trust, ids, &auditv1.AuditActor{PersonId: by, IdentityProvider: "operator"}, time.Now())
	if err := audit.Submit(wctx, w, intakeTopic, entry); err != nil {
		return fmt.Errorf("not destroyed: the destruction could not be recorded in the audit trail: %w", err)
	}
	done, err := sealing.Destroy(keyring, trust, keyID, by, time.Now())
	if err != nil {
		return fmt.Errorf("recorded in the audit trail but not destroyed (run the command again): %w", err)
	}
	fmt.Fprintf(e.out, "destroyed %s (recorded in trust %s's audit trail as %s); update the keyring Secret of intake and the console with %s\n",
		strings.Join(done, ", "), trust, entry.GetEventId(), keyring)
	return nil
}
