package allinone

import (
	"os"
	"strings"
	"testing"
)

// TestReportingStoreNeverStopsMakeRun: HERALD_POSTGRES_URL wins; without it
// make run embeds PostgreSQL, or (as root, which PostgreSQL refuses, or
// with -embed-postgres=false) says that the console's reporting is off.
func TestReportingStoreNeverStopsMakeRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WorkDir = t.TempDir()
	cfg.PostgresURL = "postgres://herald@db:5432/herald"
	url, note, stop := reportingStore(cfg)
	stop()
	if url != cfg.PostgresURL || !strings.Contains(note, "HERALD_POSTGRES_URL") {
		t.Fatalf("with a URL: %q, %q", url, note)
	}
	cfg.PostgresURL, cfg.EmbedPostgres = "", false
	if url, note, stop := reportingStore(cfg); url != "" || !strings.HasPrefix(note, "off") {
		t.Fatalf("without embedding: %q, %q", url, note)
	} else {
		stop()
	}
	if os.Geteuid() != 0 {
		t.Log("not root: the embedded case is exercised by make run itself (it downloads 14 MB from Maven Central once)")
		return
	}
	cfg.EmbedPostgres = true
	url, note, stop = reportingStore(cfg)
	stop()
	if url != "" || !strings.Contains(note, "root") {
		t.Fatalf("as root: %q, %q", url, note)
	}
}
