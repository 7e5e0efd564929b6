package ctl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/sealing"
	"github.com/herald-health/herald/platform/servicemain"
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
  heraldctl keys destroy -keyring-file K -confirm TRUST [-key ID] TRUST
                                                     crypto-shred TRUST's keys (or one key): every sealed
                                                     patient detail under them, on the log and anywhere
                                                     else, can never be opened again. The destruction is
                                                     recorded in the trust's audit trail first
                                                     (DataKeyDestroyed, by you).

Who destroys is who is signed in (heraldctl login, or HERALD_CTL_TOKEN): the token is verified against
the issuer (-issuer, HERALD_CTL_ISSUER, or make run's provider) and its subject, Herald id and name are
recorded, never a name typed on the command line. Without a sign-in destroy is refused, unless the
profile is development (-profile development, HERALD_PROFILE=development), where -by PERSON is recorded
as typed and marked unverified.

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
	by := fs.String("by", "", "destroy, development profile without a sign-in only: the person who decided the destruction, recorded as typed (unverified)")
	issuer := fs.String("issuer", e.addrs.issuer, "destroy: the OpenID issuer your sign-in is verified against (default: HERALD_CTL_ISSUER, make run's provider)")
	audience := fs.String("audience", "herald", "destroy: the audience your sign-in's access token names")
	profile := servicemain.ProfileProduction
	if v := os.Getenv("HERALD_PROFILE"); v != "" {
		if err := profile.Set(v); err != nil {
			return usageError("HERALD_PROFILE: " + err.Error())
		}
	}
	fs.Var(&profile, "profile", "production (default; HERALD_PROFILE) or development: destroy without a sign-in only in development")
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
		case *confirm != trust:
			return usageError(fmt.Sprintf("destroying %s's keys cannot be undone: pass -confirm %s", trust, trust))
		}
		who, err := destroyer(ctx, *issuer, *audience, *by, profile)
		if err != nil {
			return err
		}
		if *intakeTopic == "" {
			*intakeTopic = audit.TopicsFor(*eventsTopic).Intake
		}
		return destroyKeys(ctx, e, files.KeyringFile, trust, *key, who, brokers, *eventsTopic, *intakeTopic)
	}
	return usageError(fmt.Sprintf("unknown keys subcommand %q: kek, rotate, list or destroy", sub))
}

// destroyerOf is who decided a destruction, as the audit trail records it.
type destroyerOf struct {
	actor *auditv1.AuditActor
	// name is the person's display name (the token's name claim), or ""
	// when none was given.
	name string
}

// destroyer is the person destroying keys: the verified identity of the
// signed-in person (heraldctl login, HERALD_CTL_TOKEN). Without a sign-in
// the production profile refuses; the development profile records -by as
// typed, marked unverified. A -by beside a sign-in is refused rather than
// silently dropped.
func destroyer(ctx context.Context, issuer, audience, by string, profile servicemain.Profile) (destroyerOf, error) {
	p, err := signedIn(ctx, issuer, audience, time.Now())
	if err != nil {
		return destroyerOf{}, err
	}
	switch {
	case p != nil && by != "":
		return destroyerOf{}, usageError(fmt.Sprintf("-by is not taken when you are signed in: the destruction is recorded as yours (%s)", cmp.Or(p.PersonID, p.Subject)))
	case p != nil:
		return destroyerOf{name: p.DisplayName, actor: &auditv1.AuditActor{PersonId: cmp.Or(p.PersonID, p.Subject), IdentityProvider: "oidc",
			Issuer: p.Issuer, Subject: p.Subject, Acr: p.ACR, RelayingService: "heraldctl"}}, nil
	case profile != servicemain.ProfileDevelopment:
		return destroyerOf{}, errors.New("keys destroy needs a signed-in person (heraldctl login, or HERALD_CTL_TOKEN): the audit trail records who destroyed the keys from your verified sign-in, never from a typed name")
	case by == "":
		return destroyerOf{}, usageError("-by is required without a sign-in (development profile): the person who decided the destruction is recorded")
	}
	return destroyerOf{actor: &auditv1.AuditActor{PersonId: by, IdentityProvider: IdentityTyped, RelayingService: "heraldctl"}}, nil
}

// IdentityTyped is the identity provider recorded for a destroyer named
// with -by (development profile, nobody signed in): not verified.
const IdentityTyped = "typed-unverified (development)"

// destroyKeys records the destruction in the trust's audit trail, durably,
// and then destroys the keys: a destruction is never unrecorded. A record
// without the destruction (the tool stopped in between) is repaired by
// running the command again (the record has the same id and is chained
// once).
func destroyKeys(ctx context.Context, e *env, keyring, trust, keyID string, by destroyerOf, brokers []string, eventsTopic, intakeTopic string) error {
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
	entry := audit.KeyDestroyedEntry(trust, ids, by.actor, time.Now())
	if by.name != "" {
		entry.Detail += "; decided by " + by.name
	}
	if err := audit.Submit(wctx, w, intakeTopic, entry); err != nil {
		return fmt.Errorf("not destroyed: the destruction could not be recorded in the audit trail: %w", err)
	}
	done, err := sealing.Destroy(keyring, trust, keyID, by.actor.GetPersonId(), time.Now())
	if err != nil {
		return fmt.Errorf("recorded in the audit trail but not destroyed (run the command again): %w", err)
	}
	fmt.Fprintf(e.out, "destroyed %s (recorded in trust %s's audit trail as %s); update the keyring Secret of intake and the console with %s\n",
		strings.Join(done, ", "), trust, entry.GetEventId(), keyring)
	return nil
}
