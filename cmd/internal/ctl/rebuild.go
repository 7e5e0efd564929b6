package ctl

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/herald-health/herald/platform/redisconn"
)

func rebuildCommand() command {
	return command{
		name:    "rebuild",
		summary: "make a service rebuild its Redis state (projection, timers), or the reporting store, from the log",
		usage: `heraldctl rebuild acknowledgement|notification|reporting: make the service rebuild its Redis cache
from the event log, as it does by itself when it finds Redis wiped, or rebuild the console's reporting
store (PostgreSQL).

  acknowledgement   restores every alert's state from the compacted state topic, then re-arms every
                    open timer, deadlines first (overdue ones fire at once, once)
  notification      rebuilds its projection and its dedup records from the event log
  reporting         empties the reporting read model (alerts, alert_events) and starts a new
                    generation: the console's projector replays the event log from its start under
                    a new consumer group (-postgres URL, default $HERALD_POSTGRES_URL, else make
                    run's store). Compliance
                    figures are partial until it has caught up.

It removes the service's epoch key; the running service notices within a second (EpochEvery) and
rebuilds under a lock, one replica for all. Nothing is lost: Redis is a cache of the log.

  heraldctl rebuild acknowledgement                        make run's Redis (found through its state file)
  heraldctl rebuild notification -redis 10.0.0.5:6379      another deployment's Redis
  heraldctl rebuild reporting -postgres postgres://herald@db:5432/herald
`,
		run: runRebuild,
	}
}

// epochKeys are the keys whose absence makes each service rebuild; they
// follow the services' default namespaces, overridable by flag.
func epochKey(service, namespace string) (string, error) {
	switch service {
	case "acknowledgement":
		if namespace == "" {
			namespace = "herald"
		}
		return "{" + namespace + ":ack}:epoch", nil
	case "notification":
		if namespace == "" {
			namespace = "herald:notification"
		}
		return namespace + ":epoch", nil
	}
	return "", fmt.Errorf("say acknowledgement, notification or reporting, not %q", service)
}

func runRebuild(ctx context.Context, e *env, args []string) error {
	c := rebuildCommand()
	fs := newFlags(c, e)
	addr := fs.String("redis", e.addrs.redis, "the service's Redis address (default: make run's, from its state file)")
	db := fs.Int("redis-db", 0, "the service's Redis database")
	ns := fs.String("namespace", "", "the service's key namespace (its redis-namespace or redis-prefix setting; default the service's default)")
	pg := fs.String("postgres", e.addrs.postgres, "reporting: the reporting store's PostgreSQL URL (default $HERALD_POSTGRES_URL, else make run's)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	service, err := oneArg(fs, "service name")
	if err != nil {
		return err
	}
	if service == "reporting" {
		return rebuildReporting(ctx, e, *pg)
	}
	key, err := epochKey(service, *ns)
	if err != nil {
		return err
	}
	rcfg, err := redisConfig(*addr, *db)
	if err != nil {
		return err
	}
	rdb, err := redisconn.NewClient(rcfg, nil)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := timeout(ctx)
	defer cancel()
	n, err := rdb.Del(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("remove %s's epoch key on redis %s (address from %s; is Herald running?): %w", service, *addr, e.addrs.from, err)
	}
	if n == 0 {
		fmt.Fprintf(e.out, "no epoch key %s on redis %s db %d: the service is rebuilding already, or the namespace is wrong\n", key, *addr, *db)
		return nil
	}
	fmt.Fprintf(e.out, "%s will rebuild its Redis state from the log within a second (epoch key %s removed)\n", service, key)
	return nil
}

// rebuildReporting calls the reporting store's reporting_rebuild() (made by
// its migrations in services/console/internal/reporting): it empties the
// read model and increments its generation in one transaction.
func rebuildReporting(ctx context.Context, e *env, url string) error {
	if url == "" {
		return usageError("say which reporting store: -postgres URL or HERALD_POSTGRES_URL")
	}
	ctx, cancel := timeout(ctx)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect to the reporting store: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var gen int64
	if err := conn.QueryRow(ctx, `SELECT reporting_rebuild()`).Scan(&gen); err != nil {
		return fmt.Errorf("rebuild the reporting store (has the console migrated it?): %w", err)
	}
	fmt.Fprintf(e.out, "reporting store emptied (generation %d): the console's projector replays the event log from its start\n", gen)
	return nil
}
