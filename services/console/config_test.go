package console_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-health/herald/services/console"
)

// TestReportingSettings: the reporting store's URL comes from a file (or
// inline in development); with it, the projector's Kafka hop must be
// secured outside development; without it, Kafka is not a hop at all.
func TestReportingSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "url")
	const url = "postgres://console:secret@db:5432/herald"
	if err := os.WriteFile(file, []byte(url+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := console.DefaultConfig()
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-postgres-url-file", file, "-kafka-brokers", "kafka:9093"}); err != nil {
		t.Fatal(err)
	}
	if cfg.PostgresURL != url || strings.Join(cfg.Log.Brokers, ",") != "kafka:9093" {
		t.Fatalf("postgres-url-file / kafka-brokers: got %q, %v", cfg.PostgresURL, cfg.Log.Brokers)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "kafka-tls") {
		t.Errorf("production with a reporting store over plaintext Kafka: %v, want the kafka-tls setting named", err)
	}
	cfg.PostgresURL = ""
	if err := cfg.Validate(); err != nil && strings.Contains(err.Error(), "kafka") {
		t.Errorf("without a reporting store Kafka is not a hop, got %v", err)
	}
}
