package testinfra

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvPostgresURL is the URL of the test PostgreSQL that `make test`
// (platform/infra/deps.sh) starts: a database the test role owns.
const EnvPostgresURL = "HERALD_TEST_POSTGRES_URL"

// PostgresURL returns the URL of the test PostgreSQL, failing the test if it
// is not configured.
func PostgresURL(t testing.TB) string {
	t.Helper()
	v := os.Getenv(EnvPostgresURL)
	if v == "" {
		t.Fatalf("%s is not set: %s", EnvPostgresURL, hint)
	}
	return v
}

// NewPostgres creates a schema of its own on the test PostgreSQL and returns
// a URL whose connections use it (search_path), so that tests sharing the
// database do not see each other's tables. The schema is dropped when the
// test ends.
func NewPostgres(t testing.TB) string {
	t.Helper()
	base := PostgresURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to the test PostgreSQL (%s): %v: %s", redactURL(base), err, hint)
	}
	defer conn.Close(context.Background())
	schema := strings.ReplaceAll(UniqueName("t"), "-", "_")
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", EnvPostgresURL, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// redactURL drops the password of a URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// PostgresSchema returns the schema NewPostgres put into url's search_path.
func PostgresSchema(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Query().Get("search_path")
}
