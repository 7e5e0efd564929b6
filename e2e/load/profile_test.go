package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// profileServices takes a CPU profile of each service over the middle of a
// phase of length dur (skipping its first second) and writes it to
// dir/<service>.pprof, for `go tool pprof`. The returned group is done when
// every profile is written.
func profileServices(ctx context.Context, b *testing.B, addrs map[string]string, dir string, dur time.Duration) *sync.WaitGroup {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatalf("profile directory: %v", err)
	}
	seconds := max(1, int(dur.Seconds())-2)
	var wg sync.WaitGroup
	for name, addr := range addrs {
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			path := filepath.Join(dir, name+".pprof")
			if err := fetchProfile(ctx, addr, seconds, path); err != nil {
				b.Logf("profile %s: %v", name, err)
				return
			}
			b.Logf("CPU profile of %s over %d s: %s", name, seconds, path)
		})
	}
	return &wg
}

func fetchProfile(ctx context.Context, addr string, seconds int, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// allocs is a service's heap allocations so far (runtime.MemStats Mallocs
// and TotalAlloc, from its /debug/pprof/allocs?debug=1 page).
type allocs struct{ objects, bytes int64 }

// readAllocs reads each service's allocations so far through its pprof
// address; a service that does not answer is left out.
func readAllocs(ctx context.Context, addrs map[string]string) map[string]allocs {
	out := map[string]allocs{}
	for name, addr := range addrs {
		if a, err := fetchAllocs(ctx, addr); err == nil {
			out[name] = a
		}
	}
	return out
}

func fetchAllocs(ctx context.Context, addr string) (allocs, error) {
	var a allocs
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/allocs?debug=1", nil)
	if err != nil {
		return a, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return a, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	found := 0
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "# "), " = ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "Mallocs":
			a.objects, found = n, found+1
		case "TotalAlloc":
			a.bytes, found = n, found+1
		}
	}
	if found < 2 {
		return a, fmt.Errorf("no MemStats in the allocs page of %s", addr)
	}
	return a, sc.Err()
}
