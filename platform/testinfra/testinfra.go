// Package testinfra connects tests to the real Kafka and Redis that
// `make test` (platform/infra/deps.sh) starts on loopback ports. A test that
// needs them and finds them missing fails with instructions; it never skips,
// so a run without infrastructure cannot pass by accident.
package testinfra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

// Environment variables set by `make test` (see platform/infra/deps.sh).
const (
	EnvKafkaBrokers = "HERALD_TEST_KAFKA_BROKERS"
	EnvRedisAddr    = "HERALD_TEST_REDIS_ADDR"
)

const hint = "start the test infrastructure with `make deps-up` and source .deps/env, or run `make test`"

// KafkaBrokers returns the brokers of the test Kafka, failing the test if it
// is not configured.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	v := os.Getenv(EnvKafkaBrokers)
	if v == "" {
		t.Fatalf("%s is not set: %s", EnvKafkaBrokers, hint)
	}
	return strings.Split(v, ",")
}

// RedisAddr returns the address of the test Redis, failing the test if it is
// not configured.
func RedisAddr(t testing.TB) string {
	t.Helper()
	v := os.Getenv(EnvRedisAddr)
	if v == "" {
		t.Fatalf("%s is not set: %s", EnvRedisAddr, hint)
	}
	return v
}

// UniqueName returns prefix followed by a random suffix, for topics, consumer
// groups and key prefixes that must not collide between tests.
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// NewTopic creates a topic with a unique name and the given partitions on the
// test Kafka, and deletes it when the test ends.
func NewTopic(t testing.TB, prefix string, partitions int) string {
	t.Helper()
	brokers := KafkaBrokers(t)
	name := UniqueName(prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatalf("create topic %s on %v: %v", name, brokers, err)
	}
	if err := resp.Errors[name]; err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{name}})
	})
	return name
}

// NewRedis returns a client on a Redis database of its own (selected from a
// counter in database 0), flushed before use and closed when the test ends.
// Tests may FLUSHDB their database; they must never FLUSHALL.
func NewRedis(t testing.TB) *redis.Client {
	t.Helper()
	addr := RedisAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	n, err := admin.Incr(ctx, "herald:testinfra:db").Result()
	if err != nil {
		t.Fatalf("allocate redis database on %s: %v", addr, err)
	}
	dbs, err := admin.ConfigGet(ctx, "databases").Result()
	if err != nil {
		t.Fatalf("read redis databases setting on %s: %v", addr, err)
	}
	max, _ := strconv.Atoi(dbs["databases"])
	if max < 2 {
		t.Fatalf("redis on %s has %d databases; start it with --databases 256", addr, max)
	}
	db := 1 + int(n%int64(max-1))
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	if err := c.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("flush redis database %d on %s: %v", db, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// FreePort returns a loopback TCP address that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
