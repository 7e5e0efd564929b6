// Package testinfra connects tests to the real Kafka and Redis that
// `make test` (platform/infra/deps.sh) starts on loopback ports. A test that
// needs them and finds them missing fails with instructions; it never skips,
// so a run without infrastructure cannot pass by accident.
package testinfra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
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

// Test clients of the broker get a kafka.Transport of their own
// (&kafka.Transport{}), never kafka-go's DefaultTransport: a transport caches
// the cluster's metadata and answers metadata requests from that cache, so
// a shared one that did not create a topic (Herald's services create theirs
// through transports of their own) reports it as unknown until its cache
// expires.

// NewTopic creates a topic with a unique name and the given partitions on the
// test Kafka, and deletes it when the test ends.
func NewTopic(t testing.TB, prefix string, partitions int) string {
	t.Helper()
	brokers := KafkaBrokers(t)
	name := UniqueName(prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatalf("create topic %s on %v: %v", name, brokers, err)
	}
	if err := resp.Errors[name]; err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if err := waitTopicReady(ctx, client, name, partitions); err != nil {
		t.Fatalf("topic %s on %v not ready: %v", name, brokers, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{name}})
	})
	return name
}

// waitTopicReady polls until every partition of a just-created topic has a
// leader and answers ListOffsets. CreateTopics returns once the controller has
// committed the topic; the broker serves it a moment later, and a client that
// is quicker gets NOT_LEADER_OR_FOLLOWER or UNKNOWN_TOPIC_OR_PARTITION.
func waitTopicReady(ctx context.Context, client *kafka.Client, topic string, partitions int) error {
	var last error
	for {
		if last = topicReady(ctx, client, topic, partitions); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func topicReady(ctx context.Context, client *kafka.Client, topic string, partitions int) error {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return fmt.Errorf("metadata of topic: %v", md.Topics)
	}
	if got := len(md.Topics[0].Partitions); got != partitions {
		return fmt.Errorf("metadata lists %d of %d partitions", got, partitions)
	}
	reqs := make([]kafka.OffsetRequest, 0, partitions)
	for _, p := range md.Topics[0].Partitions {
		if p.Error != nil || p.Leader.Host == "" {
			return fmt.Errorf("partition %d has no leader yet (%v)", p.ID, p.Error)
		}
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	offsets, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return fmt.Errorf("list offsets: %w", err)
	}
	if got := len(offsets.Topics[topic]); got != partitions {
		return fmt.Errorf("list offsets answered for %d of %d partitions", got, partitions)
	}
	for _, p := range offsets.Topics[topic] {
		if p.Error != nil {
			return fmt.Errorf("list offsets of partition %d: %w", p.Partition, p.Error)
		}
	}
	return nil
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
	t.Cleanup(func() {
		// Empty it again so that a shared Redis does not grow run by run
		// (Redis slows as its keyspace grows).
		_ = c.FlushDB(context.Background()).Err()
		_ = c.Close()
	})
	return c
}

// FreePort returns a loopback TCP address that was free a moment ago. The
// port is picked below the kernel's ephemeral range, so the outgoing
// connections of the processes under test (which take ephemeral ports) do
// not grab it between this call and the listener that binds it. A port is
// handed out once per test process: two systems started side by side
// cannot be given the same port before either binds it.
func FreePort(t testing.TB) string {
	t.Helper()
	lo, hi := 20000, ephemeralLow()-1
	if hi-lo < 1000 {
		lo, hi = 10000, 20000
	}
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 200 {
		port := lo + mrand.IntN(hi-lo)
		if handedOut.ports[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err == nil {
			_ = l.Close()
			handedOut.ports[port] = true
			return addr
		}
	}
	t.Fatalf("no free port found on 127.0.0.1 between %d and %d", lo, hi)
	return ""
}

// handedOut holds the ports FreePort has returned in this process.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// ephemeralLow is the low end of the kernel's ephemeral port range
// (32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// WaitCommitted waits until every consumer group in groups has committed
// every record of topic that is on the log when it is called: each group's
// handler has returned for all of them (Herald's consumers commit a record
// only after its handler returned). It is how a test knows that what a
// handler does before it returns has happened, without sleeping. It fails
// the test after within, naming the groups still behind.
func WaitCommitted(t testing.TB, brokers []string, topic string, within time.Duration, groups ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("metadata of topic %s on %v: %v %v", topic, brokers, err, md)
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatalf("end offsets of topic %s: %v", topic, err)
	}
	end := map[int]int64{}
	for _, po := range ends.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("end offset of %s/%d: %v", topic, po.Partition, po.Error)
		}
		end[po.Partition] = po.LastOffset
	}
	behind := func(group string) (int64, error) {
		resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
		if err == nil {
			err = resp.Error
		}
		if err != nil {
			return 0, err
		}
		var lag int64
		for _, p := range resp.Topics[topic] {
			lag += max(end[p.Partition]-max(p.CommittedOffset, 0), 0)
		}
		return lag, nil
	}
	for {
		var waiting []string
		for _, g := range groups {
			lag, err := behind(g)
			if err != nil || lag > 0 {
				waiting = append(waiting, fmt.Sprintf("%s (%d records behind, error %v)", g, lag, err))
			}
		}
		if len(waiting) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("consumer groups not caught up with %s within %v: %v", topic, within, waiting)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitGroupStable waits until consumer group holds exactly members members,
// its rebalance is over (state Stable) and every member is assigned at
// least one partition of topic. A test that stops "the replica that owns a
// partition" waits for this first: while a member is still joining, a
// rebalance can revoke a partition in the middle of a handler (which is
// correct behaviour, but not the situation such a test sets up). It fails
// the test after within, with the group's last state.
func WaitGroupStable(t testing.TB, brokers []string, group, topic string, members int, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	last := "not described yet"
	for {
		resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err == nil && len(resp.Groups) == 1 && resp.Groups[0].Error == nil {
			g := resp.Groups[0]
			assigned := 0
			for _, m := range g.Members {
				for _, a := range m.MemberAssignments.Topics {
					if a.Topic == topic && len(a.Partitions) > 0 {
						assigned++
						break
					}
				}
			}
			if g.GroupState == "Stable" && len(g.Members) == members && assigned == members {
				return
			}
			last = fmt.Sprintf("state %s, %d members, %d assigned partitions of %s", g.GroupState, len(g.Members), assigned, topic)
		} else if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("consumer group %s not stable with %d members within %v: %s", group, members, within, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
