package reporting

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/fault"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the reporting read model in PostgreSQL. It is safe for
// concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	clock clock.Clock
}

// Open connects to the database at url (a libpq URL or keyword string),
// applies the migrations, and returns the store. clk gives "now" for the
// compliance figures (nil: the real clock).
func Open(ctx context.Context, url string, clk clock.Clock) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fault.Invalid("open reporting store", fault.Violation{Field: "postgres-url", Problem: "is not a PostgreSQL URL: " + err.Error()})
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open reporting store: %w", err)
	}
	if clk == nil {
		clk = clock.Real{}
	}
	s := &Store{pool: pool, clock: clk}
	if err := s.Migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the connections.
func (s *Store) Close() { s.pool.Close() }

// Migrate applies the embedded goose migrations (idempotent; concurrent
// replicas serialise on goose's lock).
func (s *Store) Migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub)
	if err != nil {
		return fmt.Errorf("reporting migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return unavailable("migrate the reporting store", err)
	}
	return nil
}

// Generation returns the read model's generation (incremented by Rebuild).
func (s *Store) Generation(ctx context.Context) (int64, error) {
	var g int64
	if err := s.pool.QueryRow(ctx, `SELECT generation FROM reporting_meta WHERE id = 1`).Scan(&g); err != nil {
		return 0, unavailable("read the reporting generation", err)
	}
	return g, nil
}

// Rebuild empties the read model and starts a new generation: running
// projectors notice it, drop their batch in flight and replay the event
// log from its start under a new consumer group. It returns the new
// generation. This is `heraldctl rebuild reporting`.
func (s *Store) Rebuild(ctx context.Context) (int64, error) {
	var g int64
	if err := s.pool.QueryRow(ctx, `SELECT reporting_rebuild()`).Scan(&g); err != nil {
		return 0, unavailable("rebuild the reporting store", err)
	}
	return g, nil
}

// errGeneration: a batch of an older generation (a rebuild happened).
// It is an outage to the consumer (retried, never dead-lettered) until the
// projector's watcher ends the generation.
var errGeneration = fmt.Errorf("the reporting store was rebuilt: the batch belongs to an older generation: %w", fault.ErrUnavailable)

// write stores events (once per event id) and recomputes the summary of
// every alert that gained an event, in one transaction of generation gen.
// ref gives references. It returns how many events were new.
func (s *Store) write(ctx context.Context, gen int64, events []Event, ref func(string) string, afterInsert func() error) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, unavailable("begin reporting write", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var cur int64
	// FOR SHARE: a concurrent Rebuild (which updates this row) waits for
	// the batch, or the batch waits for it and sees the new generation.
	if err := tx.QueryRow(ctx, `SELECT generation FROM reporting_meta WHERE id = 1 FOR SHARE`).Scan(&cur); err != nil {
		return 0, unavailable("read the reporting generation", err)
	}
	if cur != gen {
		return 0, errGeneration
	}
	ids := alertIDs(events)
	// Two writers of one alert (replicas during a rebalance) take turns, so
	// neither folds without the other's events. Sorted ids: no deadlock.
	if _, err := tx.Exec(ctx, `SELECT count(pg_advisory_xact_lock(k)) FROM
		(SELECT hashtextextended(id, 0) AS k FROM unnest($1::text[]) AS id ORDER BY 1) AS s`, ids); err != nil {
		return 0, unavailable("lock alerts", err)
	}
	rows, err := tx.Query(ctx, insertEvents, eventArgs(events)...)
	if err != nil {
		return 0, unavailable("store events", err)
	}
	touched, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, unavailable("store events", err)
	}
	if afterInsert != nil {
		if err := afterInsert(); err != nil {
			return 0, err
		}
	}
	if len(touched) == 0 {
		return 0, tx.Commit(ctx) // every event was stored already: the summaries are current
	}
	all, err := queryEvents(ctx, tx, `WHERE alert_id = ANY($1) ORDER BY alert_id, log_partition, log_offset`, uniq(touched))
	if err != nil {
		return 0, err
	}
	var sums []Summary
	for start := 0; start < len(all); {
		end := start
		for end < len(all) && all[end].AlertID == all[start].AlertID {
			end++
		}
		sums = append(sums, Fold(all[start:end], ref))
		start = end
	}
	if _, err := tx.Exec(ctx, upsertSummaries, summaryArgs(sums)...); err != nil {
		return 0, unavailable("store alert summaries", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, unavailable("commit reporting write", err)
	}
	return len(touched), nil
}

func alertIDs(events []Event) []string {
	ids := make([]string, 0, len(events))
	for _, e := range events {
		ids = append(ids, e.AlertID)
	}
	return uniq(ids)
}

func uniq(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// unavailable marks a database failure as an outage (the projector
// retries it; the console shows the reporting as unavailable).
func unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, fault.ErrUnavailable, err)
}

// nowUTC is the store's now.
func (s *Store) now() time.Time { return s.clock.Now().UTC() }
