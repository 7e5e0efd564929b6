package eventlog_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
)

// tlsPair returns the same topics reached through the test broker's
// plaintext listener (the anonymous super user) and its SASL_SSL listener
// (a service principal, whose ACLs are evaluated on every request).
func tlsPair(b *testing.B) (plain, secure eventlog.Config) {
	b.Helper()
	suffix := "-" + testinfra.UniqueName("bench")
	secure = eventlog.DefaultConfig()
	c := testinfra.KafkaSASL(b, testinfra.PrincipalAcknowledgement)
	secure.Brokers, secure.Partitions = c.Addrs, 1
	secure.EventsTopic, secure.DLQTopic, secure.StateTopic = eventlog.TopicEvents+suffix, eventlog.TopicDLQ+suffix, eventlog.TopicState+suffix
	secure.TLS, secure.TLSCAFile, secure.SASLUser, secure.SASLPassword = true, c.CAFile, c.User, c.Password
	plain = secure
	plain.Brokers = testinfra.KafkaBrokers(b)
	plain.TLS, plain.TLSCAFile, plain.SASLUser, plain.SASLPassword = false, "", "", ""
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := eventlog.EnsureTopics(ctx, secure, logging.Discard()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cl := &kafka.Client{Addr: kafka.TCP(plain.Brokers...)}
		_, _ = cl.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{secure.EventsTopic, secure.DLQTopic, secure.StateTopic}})
	})
	return plain, secure
}

// BenchmarkAppendSyncTLS is BenchmarkAppendSync through the plaintext and
// the SASL_SSL listener of the same broker, interleaved (each iteration
// appends once through each) so that both see the same machine load: the
// cost of TLS and SCRAM on the durable append an intake caller waits for.
func BenchmarkAppendSyncTLS(b *testing.B) {
	plain, secure := tlsPair(b)
	ctx := context.Background()
	writers := []*eventlog.Writer{
		eventlog.NewWriter(plain, "bench", telemetry.Nop("bench")),
		eventlog.NewWriter(secure, "bench", telemetry.Nop("bench")),
	}
	for _, w := range writers {
		defer w.Close()
		// The first append opens the connection (and, for SASL_SSL, the
		// handshakes); it is not what a running service waits for.
		if err := w.Append(ctx, raised("warm-up", 0)); err != nil {
			b.Fatal(err)
		}
	}
	lat := [2][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, w := range writers {
			start := time.Now()
			if err := w.Append(ctx, raised(fmt.Sprintf("alert-%d-%d", j, i), i)); err != nil {
				b.Fatal(err)
			}
			lat[j] = append(lat[j], time.Since(start))
		}
	}
	b.StopTimer()
	reportPair(b, lat)
}

// BenchmarkConnectTLS measures opening a connection and one metadata round
// trip, interleaved: TCP only, against TCP, TLS handshake and SCRAM-SHA-512
// authentication (the cost a service pays per broker connection at start
// and after a broker restart, not per record).
func BenchmarkConnectTLS(b *testing.B) {
	plain, secure := tlsPair(b)
	ctx := context.Background()
	lat := [2][]time.Duration{}
	for i := 0; i < b.N; i++ {
		for j, cfg := range []eventlog.Config{plain, secure} {
			start := time.Now()
			client, closeIdle := cfg.Client(10 * time.Second)
			if _, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{cfg.EventsTopic}}); err != nil {
				b.Fatal(err)
			}
			lat[j] = append(lat[j], time.Since(start))
			closeIdle()
		}
	}
	reportPair(b, lat)
}

// reportPair reports the median and 99th percentile, in milliseconds, of
// the plaintext (lat[0]) and SASL_SSL (lat[1]) measurements.
func reportPair(b *testing.B, lat [2][]time.Duration) {
	for j, name := range []string{"plain", "sasl_ssl"} {
		l := lat[j]
		if len(l) == 0 {
			continue
		}
		sort.Slice(l, func(x, y int) bool { return l[x] < l[y] })
		q := func(p float64) float64 { return float64(l[int(p*float64(len(l)-1))].Microseconds()) / 1000 }
		b.ReportMetric(q(0.50), name+"-p50-ms")
		b.ReportMetric(q(0.99), name+"-p99-ms")
	}
}
