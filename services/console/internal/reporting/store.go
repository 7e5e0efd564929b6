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

// writeHooks are test faults: each runs at its point of a write and an
// error from it ends the write there (the transaction rolls back, or, after
// the commit, the records are not acknowledged and come again).
type writeHooks struct {
	// afterInsert: the events are inserted, nothing else is written yet.
	afterInsert func() error
	// beforeCommit: the summaries and rollups are written, not committed.
	beforeCommit func() error
}

// write stores events (once per event id), recomputes the summary of every
// alert that gained an event from all of its stored events, and moves the
// compliance rollups by the difference between each such alert's old and
// new summary, in one transaction of generation gen. ref gives references.
// It returns how many events were new.
//
// Two round trips to the database (pgx pipelines): the first begins,
// checks the generation, locks the batch's alerts, reads their summaries,
// inserts the events and reads every event of those alerts back; the
// second writes the new summaries and the rollup changes and commits.
// A redelivered batch inserts nothing, so no summary and no rollup moves.
func (s *Store) write(ctx context.Context, gen int64, events []Event, ref func(string) string, hooks writeHooks) (int, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, unavailable("begin reporting write", err)
	}
	defer conn.Release()
	done := false
	defer func() {
		if !done {
			if _, err := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
				_ = conn.Conn().Close(context.WithoutCancel(ctx)) // never hand back a connection inside a transaction
			}
		}
	}()
	ids := alertIDs(events)
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	// FOR SHARE: a concurrent Rebuild (which updates this row) waits for
	// the batch, or the batch waits for it and sees the new generation.
	b.Queue(`SELECT generation FROM reporting_meta WHERE id = 1 FOR SHARE`)
	// Two writers of one alert (replicas during a rebalance) take turns, so
	// neither folds without the other's events. Sorted ids: no deadlock.
	b.Queue(`SELECT count(pg_advisory_xact_lock(k)) FROM
		(SELECT hashtextextended(id, 0) AS k FROM unnest($1::text[]) AS id ORDER BY 1) AS s`, ids)
	b.Queue(`SELECT `+summaryColumns+` FROM alerts WHERE alert_id = ANY($1)`, ids)
	b.Queue(insertEvents, eventArgs(events)...)
	b.Queue(`SELECT `+eventColumns+` FROM alert_events WHERE alert_id = ANY($1) ORDER BY alert_id, log_partition, log_offset`, ids)
	br := conn.SendBatch(ctx, b)
	var cur int64
	old := map[string]Summary{}
	var touched []string
	var all []Event
	err = func() error {
		if _, err := br.Exec(); err != nil {
			return unavailable("begin reporting write", err)
		}
		if err := br.QueryRow().Scan(&cur); err != nil {
			return unavailable("read the reporting generation", err)
		}
		if _, err := br.Exec(); err != nil {
			return unavailable("lock alerts", err)
		}
		rows, err := br.Query()
		if err != nil {
			return unavailable("read alert summaries", err)
		}
		sums, err := pgx.CollectRows(rows, scanSummary)
		if err != nil {
			return unavailable("read alert summaries", err)
		}
		for _, sum := range sums {
			old[sum.AlertID] = sum
		}
		rows, err = br.Query()
		if err != nil {
			return unavailable("store events", err)
		}
		if touched, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return unavailable("store events", err)
		}
		rows, err = br.Query()
		if err != nil {
			return unavailable("read events", err)
		}
		if all, err = pgx.CollectRows(rows, scanEvent); err != nil {
			return unavailable("read events", err)
		}
		return nil
	}()
	if cerr := br.Close(); err == nil && cerr != nil {
		err = unavailable("store events", cerr)
	}
	if err != nil {
		return 0, err
	}
	if cur != gen {
		return 0, errGeneration
	}
	if hooks.afterInsert != nil {
		if err := hooks.afterInsert(); err != nil {
			return 0, err
		}
	}
	b = &pgx.Batch{}
	if len(touched) > 0 {
		changed := map[string]bool{}
		for _, id := range touched {
			changed[id] = true
		}
		delta := newRollupDelta()
		var sums []Summary
		for start := 0; start < len(all); {
			end := start
			for end < len(all) && all[end].AlertID == all[start].AlertID {
				end++
			}
			if id := all[start].AlertID; changed[id] {
				sum := Fold(all[start:end], ref)
				if prev, ok := old[id]; ok {
					delta.add(prev, -1)
				}
				delta.add(sum, +1)
				sums = append(sums, sum)
			}
			start = end
		}
		b.Queue(upsertSummaries, summaryArgs(sums)...)
		if args, n := delta.countArgs(); n > 0 {
			b.Queue(upsertRollup, args...)
			b.Queue(deleteEmptyRollup, args[:5]...)
		}
		if args, n := delta.declineArgs(); n > 0 {
			b.Queue(upsertDeclines, args...)
			b.Queue(deleteEmptyDeclines, args[:6]...)
		}
		if args, n := delta.histArgs(); n > 0 {
			b.Queue(upsertHistogram, args...)
			b.Queue(deleteEmptyHistogram, args[:5]...)
		}
	}
	if hooks.beforeCommit == nil {
		b.Queue(`COMMIT`)
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return 0, unavailable("store alert summaries and rollups", err)
	}
	if hooks.beforeCommit != nil {
		if err := hooks.beforeCommit(); err != nil {
			return 0, err
		}
		if _, err := conn.Exec(ctx, `COMMIT`); err != nil {
			return 0, unavailable("commit reporting write", err)
		}
	}
	done = true
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
