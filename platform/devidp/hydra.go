package devidp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// HydraVersion is the Ory Hydra the provider runs (served by the Go module
// proxy; built from source once and cached).
const HydraVersion = "v2.3.0"

// Binary returns the path of a Hydra binary: $HERALD_HYDRA_BIN when set,
// else one built before into the cache folder, else it builds one there
// from the module source (minutes the first time: Hydra is large). The
// build is serialised across processes with a lock file.
func Binary(ctx context.Context) (string, error) {
	if p := os.Getenv("HERALD_HYDRA_BIN"); p != "" {
		return p, nil
	}
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hydra")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // another process built it while we waited
	}
	return bin, build(ctx, bin)
}

// cacheDir is $HERALD_DEPS_DIR/hydra-<version>, else the user cache.
func cacheDir() (string, error) {
	if d := os.Getenv("HERALD_DEPS_DIR"); d != "" {
		return filepath.Join(d, "hydra-"+HydraVersion), nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder for the Hydra binary (set HERALD_HYDRA_BIN or HERALD_DEPS_DIR): %w", err)
	}
	return filepath.Join(d, "herald", "hydra-"+HydraVersion), nil
}

// build compiles Hydra from the module source: the module's go.mod
// replaces its API client by a folder the module archive does not hold,
// so the copy drops that replacement (the published client is the same).
func build(ctx context.Context, bin string) error {
	run := func(dir string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=1")
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return out, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, ee.Stderr)
			}
			return out, fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
		return out, nil
	}
	tmp, err := os.MkdirTemp("", "herald-hydra-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	out, err := run(tmp, "mod", "download", "-json", "github.com/ory/hydra/v2@"+HydraVersion)
	if err != nil {
		return fmt.Errorf("download Hydra: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("download Hydra: no module folder in %q", out)
	}
	src := filepath.Join(tmp, "src")
	if b, err := exec.CommandContext(ctx, "cp", "-r", mod.Dir, src).CombinedOutput(); err != nil {
		return fmt.Errorf("copy Hydra source: %v: %s", err, b)
	}
	if b, err := exec.CommandContext(ctx, "chmod", "-R", "u+w", src).CombinedOutput(); err != nil {
		return fmt.Errorf("copy Hydra source: %v: %s", err, b)
	}
	gomod := filepath.Join(src, "go.mod")
	b, err := os.ReadFile(gomod)
	if err != nil {
		return err
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "replace github.com/ory/hydra-client-go/v2 =>") {
			lines = append(lines, l)
		}
	}
	if err := os.WriteFile(gomod, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		return err
	}
	part := bin + ".part"
	if _, err := run(src, "build", "-tags", "sqlite,sqlite_omit_load_extension", "-o", part, "."); err != nil {
		return fmt.Errorf("build Hydra %s: %w", HydraVersion, err)
	}
	return os.Rename(part, bin)
}
