package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
