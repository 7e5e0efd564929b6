package allinone

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	embeddedpostgres "github.com/fergusstrange/embedded-postgres"
	"github.com/herald-health/herald/platform/freeport"
)

// reportingStore finds the PostgreSQL of the console's reporting store for
// make run: HERALD_POSTGRES_URL (cfg.PostgresURL) when set; else an
// embedded PostgreSQL 15 (github.com/fergusstrange/embedded-postgres: its
// binaries, about 14 MB, come from Maven Central once and are cached in the
// user cache folder) with its data under WORK_DIR/postgres. It never stops
// make run: when PostgreSQL cannot be had (offline on the first run, or run
// as root, which PostgreSQL refuses), url is empty and note says the
// console's reporting is off and why.
func reportingStore(cfg Config) (url, note string, stop func()) {
	stop = func() {}
	if cfg.PostgresURL != "" {
		return cfg.PostgresURL, "PostgreSQL at HERALD_POSTGRES_URL", stop
	}
	if !cfg.EmbedPostgres {
		return "", "off (-embed-postgres=false and no HERALD_POSTGRES_URL)", stop
	}
	if os.Geteuid() == 0 {
		return "", "off: PostgreSQL does not run as root; run make run as a user, or set HERALD_POSTGRES_URL", stop
	}
	addr, err := freeport.Addr(cfg.Host)
	if err != nil {
		return "", "off: " + err.Error(), stop
	}
	_, portStr, _ := cutLast(addr, ":")
	port, _ := strconv.Atoi(portStr)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cfg.WorkDir, "postgres")
	pg := embeddedpostgres.NewDatabase(embeddedpostgres.DefaultConfig().
		Version(embeddedpostgres.V15).Port(uint32(port)).
		Username("herald").Password("herald").Database("herald").
		RuntimePath(filepath.Join(dir, "runtime")).DataPath(filepath.Join(dir, "data")).
		BinariesPath(filepath.Join(dir, "bin")).CachePath(filepath.Join(cache, "herald", "embedded-postgres")).
		Logger(discard{}))
	if err := pg.Start(); err != nil {
		return "", "off: embedded PostgreSQL did not start (" + err.Error() + "); set HERALD_POSTGRES_URL", stop
	}
	url = fmt.Sprintf("postgres://herald:herald@%s/herald?sslmode=disable", addr)
	return url, "embedded PostgreSQL 15 in " + dir, func() { _ = pg.Stop() }
}

func cutLast(s, sep string) (string, string, bool) {
	i := len(s) - len(sep)
	for ; i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// discard drops the embedded server's log (it goes to its own log file).
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
