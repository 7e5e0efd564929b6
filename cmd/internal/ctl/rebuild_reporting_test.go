package ctl

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/herald-health/herald/platform/testinfra"
)

// TestRebuildReporting: `heraldctl rebuild reporting` empties the reporting
// store and starts a new generation (the console's projector then replays
// the log). The schema is the console's own migration.
func TestRebuildReporting(t *testing.T) {
	ctx := context.Background()
	url := testinfra.NewPostgres(t)
	b, err := os.ReadFile("../../../services/console/internal/reporting/migrations/00001_reporting.sql")
	if err != nil {
		t.Fatal(err)
	}
	up, _, _ := strings.Cut(string(b), "-- +goose Down")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, up); err != nil {
		t.Fatalf("apply the reporting migration: %v", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO alert_events (event_id, alert_id, tenant, type, occurred_at, log_partition, log_offset)
		VALUES ('e1', 'a1', 'RXF', 'AlertRaised', now(), 0, 0)`); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCtl("rebuild", "reporting", "-postgres", url)
	if code != 0 || !strings.Contains(out, "generation 2") {
		t.Fatalf("rebuild reporting: exit %d, %q %q", code, out, errOut)
	}
	var events, gen int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM alert_events), (SELECT generation FROM reporting_meta)`).Scan(&events, &gen); err != nil {
		t.Fatal(err)
	}
	if events != 0 || gen != 2 {
		t.Fatalf("after rebuild: %d events, generation %d; want 0 and 2", events, gen)
	}

	t.Setenv("HERALD_POSTGRES_URL", "")
	t.Setenv("HERALD_CTL_STATE", t.TempDir()+"/no-run.json") // no make run's store either
	if code, _, errOut := runCtl("rebuild", "reporting"); code != 2 || !strings.Contains(errOut, "-postgres") {
		t.Fatalf("rebuild reporting without a store: exit %d, %q", code, errOut)
	}
}
