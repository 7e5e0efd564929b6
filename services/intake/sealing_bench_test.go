package intake_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/sealing"
	"github.com/herald-health/herald/services/intake"
	"github.com/herald-health/herald/services/intake/internal/mllp"
)

// BenchmarkMLLPMaxRateSealedVsClear measures the cost of sealing patient
// data end to end, in pairs: the same closed loop over 10 MLLP connections
// to a real Kafka (acks=all), without keys (clear) and with them (sealed),
// each on a fresh intake. -count N runs each N times (clear first); on a
// shared machine compare medians over several runs.
func BenchmarkMLLPMaxRateSealedVsClear(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		name := map[bool]string{false: "clear", true: "sealed"}[sealed]
		b.Run(name, func(b *testing.B) {
			var files sealing.Files
			if sealed {
				dir := b.TempDir()
				files = sealing.Files{KeyringFile: filepath.Join(dir, "keyring.json"), KEKFile: filepath.Join(dir, "kek")}
				if err := sealing.GenerateKEKFile(files.KEKFile); err != nil {
					b.Fatal(err)
				}
				kek, err := sealing.LoadFileKEK(files.KEKFile)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := sealing.Rotate(context.Background(), files.KeyringFile, kek, "RZZ", time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			h := start(b, func(c *intake.Config) { c.HandleTimeout = 30 * time.Second; c.Keys = files })
			const conns = 10
			n := max(b.N, 1000)
			run := fmt.Sprint(time.Now().UnixNano())
			msgs := make([][]byte, n)
			for i := range msgs {
				msgs[i] = benchMessage(b, run, i)
			}
			var next, failures atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			begin := time.Now()
			for range conns {
				wg.Go(func() {
					c, err := mllp.Dial(context.Background(), h.addrs["mllp"], nil, 30*time.Second)
					if err != nil {
						failures.Add(1)
						return
					}
					defer c.Close()
					for {
						i := int(next.Add(1)) - 1
						if i >= n {
							return
						}
						ack, err := c.Send(msgs[i])
						if err != nil || !bytes.Contains(ack, []byte("MSA|AA|")) {
							failures.Add(1)
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(begin)
			b.StopTimer()
			if f := failures.Load(); f > 0 {
				b.Fatalf("%d messages not acknowledged AA", f)
			}
			b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
		})
	}
}
