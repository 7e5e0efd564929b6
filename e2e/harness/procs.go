package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-health/herald/platform/mtls"
)

// RepoRoot returns the repository root (the folder holding go.work).
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := findRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.work not found above %s", dir)
		}
		dir = parent
	}
}

// Build compiles each service's binary (services/<name>/cmd/<name>) into a
// temporary folder and returns the paths by name.
func Build(t testing.TB, names ...string) map[string]string {
	t.Helper()
	paths, err := BuildInto(t.TempDir(), names...)
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// BuildInto compiles each service's binary (or heraldctl) into dir (for a
// TestMain that builds once for a whole suite).
func BuildInto(dir string, names ...string) (map[string]string, error) {
	root, err := findRoot()
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, n := range names {
		pkg := "./services/" + n + "/cmd/" + n
		if n == "heraldctl" {
			pkg = "./cmd/heraldctl"
		}
		bin := filepath.Join(dir, n)
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %v\n%s", n, err, b)
		}
		paths[n] = bin
	}
	return paths, nil
}

// Proc is a service running as a separate process. Its output (JSON logs)
// is kept across restarts for the suites' no-patient-data checks.
type Proc struct {
	Name string
	path string
	env  []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs bytes.Buffer
	done chan struct{}
}

type lockedWriter struct{ p *Proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.logs.Write(b)
}

// Start runs the binary with env added to the environment; the process is
// killed when the test ends.
func Start(t testing.TB, name, path string, env []string) *Proc {
	t.Helper()
	p := &Proc{Name: name, path: path, env: env}
	p.start(t)
	t.Cleanup(func() { p.Stop() })
	return p
}

func (p *Proc) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(p.path)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout = lockedWriter{p}
	cmd.Stderr = lockedWriter{p}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// Kill9 kills the process with SIGKILL and waits for it to die.
func (p *Proc) Kill9() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Restart starts the process again after Kill9 or Stop.
func (p *Proc) Restart(t testing.TB) { p.start(t) }

// Stop asks the process to stop (SIGTERM) and kills it after 10 s.
func (p *Proc) Stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// Env returns the environment the process was started with (beyond the
// test's own).
func (p *Proc) Env() []string { return append([]string(nil), p.env...) }

// Logs returns everything the process has written so far.
func (p *Proc) Logs() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.logs.Bytes()...)
}

// WaitHealthy waits until the gRPC health service at addr reports SERVING;
// on failure it shows the process's output, if given.
func WaitHealthy(t testing.TB, addr string, within time.Duration, p *Proc) {
	t.Helper()
	WaitHealthyTLS(t, addr, nil, within, p)
}

// WaitHealthyTLS is WaitHealthy over mutual TLS with id (nil: plaintext).
func WaitHealthyTLS(t testing.TB, addr string, id *mtls.Source, within time.Duration, p *Proc) {
	t.Helper()
	creds := insecure.NewCredentials()
	if id != nil {
		creds = mtls.GRPCClientCredentials(id, "")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			return
		}
		last = err
		if err == nil {
			last = fmt.Errorf("status %v", resp.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var logs []byte
	if p != nil {
		logs = p.Logs()
		if len(logs) > 4096 {
			logs = logs[len(logs)-4096:]
		}
	}
	t.Fatalf("%s not healthy within %v: %v\n%s", addr, within, last, logs)
}

// Eventually polls cond every 50 ms until it holds or within passes, then
// fails with what describe says about the last state.
func Eventually(t testing.TB, within time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("condition not met within %v: %s", within, describe())
}
