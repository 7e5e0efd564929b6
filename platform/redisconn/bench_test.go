package redisconn_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-health/herald/platform/redisconn"
	"github.com/herald-health/herald/platform/testinfra"
)

// BenchmarkRoundTripTLS measures, interleaved so that both see the same
// machine load, a GET round trip and a pipeline of 100 SETs on the
// plaintext test Redis (no password) and on the TLS Redis as a service's
// ACL user. Each iteration does one of each on both.
func BenchmarkRoundTripTLS(b *testing.B) {
	c := testinfra.RedisTLS(b, testinfra.PrincipalIntake)
	configs := []redisconn.Config{
		{Addr: testinfra.RedisAddr(b), DB: 1},
		{Addr: c.Addrs[0], Username: c.User, Password: c.Password, TLS: true, TLSCAFile: c.CAFile},
	}
	names := []string{"plain", "tls"}
	ctx := context.Background()
	key := "herald:intake:outcome:" + testinfra.UniqueName("bench")
	clients := make([]*redis.Client, len(configs))
	for i, cfg := range configs {
		rdb, err := redisconn.NewClient(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer rdb.Close()
		defer rdb.Del(ctx, key)
		if err := rdb.Set(ctx, key, "accepted", time.Minute).Err(); err != nil {
			b.Fatal(err)
		}
		clients[i] = rdb
	}
	get := make([][]time.Duration, len(clients))
	pipe := make([][]time.Duration, len(clients))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, rdb := range clients {
			start := time.Now()
			if err := rdb.Get(ctx, key).Err(); err != nil {
				b.Fatal(err)
			}
			get[j] = append(get[j], time.Since(start))
			start = time.Now()
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for k := 0; k < 100; k++ {
					p.Set(ctx, key, k, time.Minute)
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			pipe[j] = append(pipe[j], time.Since(start))
		}
	}
	b.StopTimer()
	for j, name := range names {
		reportLatency(b, name+"-get", get[j])
		reportLatency(b, name+"-pipe100", pipe[j])
	}
}

// reportLatency reports the median and the 99th percentile of lat in
// microseconds, under the given prefix.
func reportLatency(b *testing.B, prefix string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1000 }
	b.ReportMetric(q(0.50), prefix+"-p50-µs")
	b.ReportMetric(q(0.99), prefix+"-p99-µs")
}
