// Package ctl implements heraldctl's commands. Each command is a function of
// its arguments and writers, so tests drive it exactly as a user would.
//
// Output shows identifiers, categories, states, steps and times only; patient
// details stay in the (access-controlled) event payloads and are printed only
// by `tail -payload`, which says so.
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/cmd/internal/runstate"
	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/redisconn"
)

// command is one heraldctl subcommand.
type command struct {
	name    string
	summary string
	usage   string
	run     func(ctx context.Context, env *env, args []string) error
}

// env carries the writers and the addresses every command may use.
type env struct {
	out, errOut io.Writer
	addrs       addresses

	idOnce sync.Once
	id     *mtls.Source
	idErr  error
}

// identity is the certificate heraldctl presents and the CA it verifies
// the services with (nil: plaintext, for a run started with -insecure).
func (e *env) identity() (*mtls.Source, error) {
	e.idOnce.Do(func() {
		if e.addrs.tls.IsZero() {
			return
		}
		e.id, e.idErr = mtls.Load(e.addrs.tls, mtls.Options{})
		if e.idErr != nil {
			e.idErr = fmt.Errorf("heraldctl's certificate (HERALD_CTL_TLS_CERT, HERALD_CTL_TLS_KEY, HERALD_CTL_TLS_CA): %w", e.idErr)
		}
	})
	return e.id, e.idErr
}

// addresses of the services, the broker and Redis. Each comes from, in
// order: its per-command flag, the environment (HERALD_CTL_INTAKE, ...),
// the state file of a running `make run`, and the fixed ports `make run`
// binds its services to.
type addresses struct {
	intake, fhir, mllp, rules, notification, ack, kafka, redis string
	// postgres is the reporting store (HERALD_POSTGRES_URL, else make run's).
	postgres string
	// tls is heraldctl's certificate and the services' CA bundle.
	tls mtls.Files
	// issuer is the OpenID provider heraldctl login signs in with.
	issuer string
	// from names where the addresses came from, for error messages.
	from string
}

// defaultAddresses reads the environment and the state file at statePath
// (a missing file, or one left by a run that has stopped, is ignored).
func defaultAddresses(statePath string) addresses {
	st, ok, err := runstate.Read(statePath)
	if err != nil || !ok || !st.Running() {
		st = runstate.State{}
	}
	from := "the defaults"
	if st.PID != 0 {
		from = "make run's state file " + statePath
	}
	get := func(name, state, def string) string {
		switch {
		case os.Getenv("HERALD_CTL_"+name) != "":
			return os.Getenv("HERALD_CTL_" + name)
		case state != "":
			return state
		}
		return def
	}
	return addresses{
		intake:       get("INTAKE", st.IntakeGRPC, "127.0.0.1:7001"),
		fhir:         get("FHIR", st.FHIRURL, "http://127.0.0.1:8001"),
		mllp:         get("MLLP", st.MLLP, "127.0.0.1:2575"),
		rules:        get("RULES", st.RulesGRPC, "127.0.0.1:7002"),
		notification: get("NOTIFICATION", st.NotificationGRPC, "127.0.0.1:7004"),
		ack:          get("ACK", st.AckGRPC, "127.0.0.1:7003"),
		kafka:        get("KAFKA", strings.Join(st.KafkaBrokers, ","), "127.0.0.1:9092"),
		redis:        get("REDIS", st.RedisAddr, "127.0.0.1:6379"),
		postgres:     firstOf(os.Getenv("HERALD_POSTGRES_URL"), st.PostgresURL),
		tls: mtls.Files{
			CertFile: get("TLS_CERT", st.TLSCert, ""),
			KeyFile:  get("TLS_KEY", st.TLSKey, ""),
			CAFile:   get("TLS_CA", st.TLSCA, ""),
		},
		issuer: get("ISSUER", st.OIDCIssuer, ""),
		from:   from,
	}
}

// statePath is where heraldctl looks for a running `make run`'s state:
// HERALD_CTL_STATE, else the all-in-one's default work directory.
func statePath() string {
	if p := os.Getenv("HERALD_CTL_STATE"); p != "" {
		return p
	}
	return runstate.DefaultPath()
}

func commands() []command {
	return []command{
		raiseCommand(),
		listCommand(),
		showCommand(),
		ackCommand(),
		declineCommand(),
		actionCommand(),
		closeCommand(),
		tailCommand(),
		rebuildCommand(),
		policyCommand(),
		bundleCommand(),
		loginCommand(),
		auditCommand(),
		keysCommand(),
	}
}

// Main runs heraldctl with args and returns the process exit code.
func Main(ctx context.Context, args []string, out, errOut io.Writer) int {
	e := &env{out: out, errOut: errOut, addrs: defaultAddresses(statePath())}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			for _, c := range commands() {
				if c.name == args[1] {
					fmt.Fprint(out, c.usage)
					return 0
				}
			}
		}
		usage(out)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		if err == nil {
			return 0
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if errors.Is(err, errUsage) {
			fmt.Fprintf(errOut, "heraldctl %s: %s\n\n%s", c.name, plain(err), c.usage)
			return 2
		}
		fmt.Fprintf(errOut, "heraldctl %s: %s\n", c.name, plain(err))
		return 1
	}
	fmt.Fprintf(errOut, "heraldctl: unknown command %q; run `heraldctl help` for the list\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `heraldctl operates a running Herald: raise and inspect alerts, act on them, follow the event log.

Usage: heraldctl <command> [flags] [arguments]

Commands:
`)
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "heraldctl help <command>" or "heraldctl <command> -h" for a command's flags and examples.

Flags may come before or after a command's arguments ("close ALERT_ID -reason X" or "close -reason X ALERT_ID").

Commands on alerts (ack, decline, action, close) act as the person signed in with "heraldctl login"
(or the access token in HERALD_CTL_TOKEN): the services take the actor from the token alone.

While "make run" runs, heraldctl finds its services, broker and Redis through the state file it
writes (`+runstate.DefaultPath()+`; HERALD_CTL_STATE names another). To reach another
deployment, set HERALD_CTL_INTAKE, HERALD_CTL_FHIR, HERALD_CTL_MLLP, HERALD_CTL_RULES,
HERALD_CTL_NOTIFICATION, HERALD_CTL_ACK, HERALD_CTL_KAFKA or HERALD_CTL_REDIS, or pass -addr.
Herald's services require a client certificate: heraldctl presents the one make run made (from
the state file), or HERALD_CTL_TLS_CERT and HERALD_CTL_TLS_KEY, verifying the services with
HERALD_CTL_TLS_CA.
`)
}

// plain turns a gRPC error into words a person can act on.
func plain(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	switch st.Code().String() {
	case "Unavailable":
		return "the service is not reachable (" + st.Message() + "); is Herald running (make run) and the address right?"
	case "InvalidArgument":
		return "the request was refused: " + st.Message()
	case "FailedPrecondition":
		return "not allowed now: " + st.Message()
	case "NotFound":
		return "not found: " + st.Message()
	case "PermissionDenied":
		return "not permitted: " + st.Message()
	case "Unauthenticated":
		return "not signed in: " + st.Message() + " (heraldctl login)"
	case "DeadlineExceeded":
		return "the service did not answer in time"
	}
	return st.Code().String() + ": " + st.Message()
}

// dial connects to a Herald gRPC service: with mutual TLS when heraldctl
// has a certificate, in plaintext otherwise (a run started -insecure).
func (e *env) dial(addr string) (*grpc.ClientConn, error) {
	id, err := e.identity()
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if id != nil {
		creds = mtls.GRPCClientCredentials(id, "")
	}
	// Calls carry the signed-in person's token (heraldctl login), if any:
	// the services take the actor of a command from it alone.
	tok, err := accessToken(time.Now())
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if tok != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(authn.Bearer(authn.StaticToken(tok))))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return conn, nil
}

// newFlags returns a flag set whose -h prints the command's usage.
func newFlags(c command, e *env) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(e.errOut)
	fs.Usage = func() {
		fmt.Fprint(e.errOut, c.usage)
		fmt.Fprintln(e.errOut, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

func timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 15*time.Second)
}

// errUsage marks a command called without what it needs: Main prints the
// command's usage and exits 2.
var errUsage = errors.New("usage")

// usageError returns an error that says what is missing and prints usage.
func usageError(msg string) error { return fmt.Errorf("%s: %w", msg, errUsage) }

// parseArgs parses flags wherever they stand among the arguments: Go's flag
// package stops at the first non-flag, which would make "ack ALERT_ID -as X"
// an error. "--" ends the flags; everything after it is an argument. The
// arguments, in order, are left in fs.Args().
func parseArgs(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	// Leave the arguments where callers read them: fs.Args().
	return fs.Parse(append([]string{"--"}, positional...))
}

func oneArg(fs *flag.FlagSet, what string) (string, error) {
	if fs.NArg() != 1 {
		return "", usageError(fmt.Sprintf("give exactly one %s (got %d: %s)", what, fs.NArg(), strings.Join(fs.Args(), " ")))
	}
	return fs.Arg(0), nil
}

// ctlEnv looks a platform setting up under heraldctl's prefix: the flag
// kafka-sasl-user is HERALD_CTL_KAFKA_SASL_USER.
func ctlEnv(name string) (string, bool) {
	return os.LookupEnv("HERALD_CTL_" + strings.TrimPrefix(name, config.Prefix))
}

// kafkaConfig is the event log heraldctl reads, on brokers, with the TLS
// and SASL settings of the environment (HERALD_CTL_KAFKA_TLS,
// HERALD_CTL_KAFKA_TLS_CA, HERALD_CTL_KAFKA_SASL_USER,
// HERALD_CTL_KAFKA_SASL_PASSWORD_FILE): an operator's principal on a
// SASL_SSL listener.
func kafkaConfig(brokers []string, topic string) (eventlog.Config, error) {
	cfg := eventlog.DefaultConfig()
	fs := flag.NewFlagSet("kafka", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := config.ParseEnv(fs, nil, ctlEnv); err != nil {
		return cfg, err
	}
	cfg.Brokers, cfg.EventsTopic = brokers, topic
	return cfg, nil
}

// redisConfig is the Redis heraldctl reaches at addr and db, with the TLS
// and ACL settings of the environment (HERALD_CTL_REDIS_TLS,
// HERALD_CTL_REDIS_TLS_CA, HERALD_CTL_REDIS_USER,
// HERALD_CTL_REDIS_PASSWORD_FILE).
func redisConfig(addr string, db int) (redisconn.Config, error) {
	var cfg redisconn.Config
	fs := flag.NewFlagSet("redis", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := config.ParseEnv(fs, nil, ctlEnv); err != nil {
		return cfg, err
	}
	cfg.Addr, cfg.DB = addr, db
	return cfg, nil
}

// firstOf returns the first non-empty value.
func firstOf(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
