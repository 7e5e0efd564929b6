package testinfra

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
	for range 20 {
		addr := FreePort(t)
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		if p >= ephemeralLow() {
			t.Fatalf("port %d is in the ephemeral range (from %d)", p, ephemeralLow())
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("FreePort gave %s, which cannot be bound: %v", addr, err)
		}
		_ = l.Close()
	}
}

// Two systems started side by side each take many ports before binding
// them: FreePort must never give the same one twice (2,000 draws from the
// range below the ephemeral ports would repeat one almost surely).
func TestFreePortNeverHandsOutAPortTwice(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		addr := FreePort(t)
		if seen[addr] {
			t.Fatalf("FreePort gave %s twice", addr)
		}
		seen[addr] = true
	}
}

// TestNewPostgresIsolatesSchemas: two schemas from NewPostgres do not see
// each other's tables, and a missing HERALD_TEST_POSTGRES_URL fails (never
// skips) the test that asks for it.
func TestNewPostgresIsolatesSchemas(t *testing.T) {
	ctx := context.Background()
	a, b := NewPostgres(t), NewPostgres(t)
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	if _, err := ca.Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Exec(ctx, "SELECT * FROM only_in_a"); err == nil {
		t.Fatal("schema b sees schema a's table")
	}
	var schema string
	if err := ca.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil || schema != PostgresSchema(a) {
		t.Fatalf("current_schema = %q (%v), want %q", schema, err, PostgresSchema(a))
	}

	t.Setenv(EnvPostgresURL, "")
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		PostgresURL(ft)
	}()
	if !ft.failed {
		t.Fatal("PostgresURL did not fail the test without HERALD_TEST_POSTGRES_URL")
	}
}

// fatalRecorder records a Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}
