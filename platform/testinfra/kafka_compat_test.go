package testinfra_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/testinfra"
)

// These tests pin the Kafka version chosen in platform/infra/kafka/pom.xml:
// they exercise, against the real broker, exactly the kafka-go features the
// services rely on (acks=all writes, consumer groups with explicit commits,
// resuming after the committed offset, topic create/delete).

func TestKafkaWriterRequireAllAndGroupResumesAfterCommit(t *testing.T) {
	// given a topic with 3 partitions holding 30 keyed records written with acks=all
	brokers := testinfra.KafkaBrokers(t)
	topic := testinfra.NewTopic(t, "compat", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
	}
	defer func() { require.NoError(t, w.Close()) }()
	const total = 30
	var msgs []kafka.Message
	for i := range total {
		msgs = append(msgs, kafka.Message{
			Key:     fmt.Appendf(nil, "key-%d", i%10),
			Value:   fmt.Appendf(nil, "value-%02d", i),
			Headers: []kafka.Header{{Key: "herald-event-type", Value: []byte("compat")}},
		})
	}
	require.NoError(t, w.WriteMessages(ctx, msgs...))

	// when a group member fetches and commits the first 10, then leaves
	group := testinfra.UniqueName("compat-group")
	seen := map[string]bool{}
	committed := map[int]int64{} // partition -> last committed offset
	r1 := newGroupReader(brokers, group, topic)
	for range 10 {
		m, err := r1.FetchMessage(ctx)
		require.NoError(t, err, "fetch from first group member")
		require.NoError(t, r1.CommitMessages(ctx, m), "commit offset %d of partition %d", m.Offset, m.Partition)
		requireHeader(t, m, "herald-event-type", "compat")
		seen[string(m.Value)] = true
		committed[m.Partition] = m.Offset
	}
	require.NoError(t, r1.Close())

	// then a new member of the same group resumes right after the committed offsets
	r2 := newGroupReader(brokers, group, topic)
	defer func() { require.NoError(t, r2.Close()) }()
	firstOffset := map[int]int64{}
	lastOffset := map[int]int64{}
	lastValueOfKey := map[string]string{}
	for len(seen) < total {
		m, err := r2.FetchMessage(ctx)
		require.NoError(t, err, "fetch from second group member (have %d of %d)", len(seen), total)
		require.False(t, seen[string(m.Value)], "record %s (partition %d offset %d) delivered again after its commit",
			m.Value, m.Partition, m.Offset)
		seen[string(m.Value)] = true
		if _, ok := firstOffset[m.Partition]; !ok {
			firstOffset[m.Partition] = m.Offset
		} else {
			require.Equal(t, lastOffset[m.Partition]+1, m.Offset, "offsets of partition %d in order", m.Partition)
		}
		lastOffset[m.Partition] = m.Offset
		key := string(m.Key)
		require.Less(t, lastValueOfKey[key], string(m.Value), "records of key %s in order", key)
		lastValueOfKey[key] = string(m.Value)
		require.NoError(t, r2.CommitMessages(ctx, m))
	}
	for p, off := range committed {
		if first, ok := firstOffset[p]; ok {
			require.Equal(t, off+1, first, "partition %d resumes after committed offset %d", p, off)
		}
	}
	require.Len(t, seen, total)

	// and the group's committed offsets are visible to an admin client
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2}}})
	require.NoError(t, err)
	require.NoError(t, resp.Error)
	var sum int64
	for _, p := range resp.Topics[topic] {
		require.NoError(t, p.Error)
		sum += p.CommittedOffset
	}
	require.Equal(t, int64(total), sum, "committed offsets of all partitions add up to the record count")
}

func TestKafkaTopicsCreateListDelete(t *testing.T) {
	// given a fresh topic
	brokers := testinfra.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	name := testinfra.UniqueName("compat-admin")
	created, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: name, NumPartitions: 2, ReplicationFactor: 1}},
	})
	require.NoError(t, err)
	require.NoError(t, created.Errors[name])

	// when its metadata is read
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{name}})
	require.NoError(t, err)

	// then it has the requested partitions on the single broker
	require.Len(t, md.Topics, 1)
	require.NoError(t, md.Topics[0].Error)
	require.Len(t, md.Topics[0].Partitions, 2)
	require.Len(t, md.Brokers, 1)

	// and creating it again reports that it exists
	again, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: name, NumPartitions: 2, ReplicationFactor: 1}},
	})
	require.NoError(t, err)
	require.ErrorIs(t, again.Errors[name], kafka.TopicAlreadyExists)

	// and deleting it works (delete.topic.enable)
	deleted, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{name}})
	require.NoError(t, err)
	require.NoError(t, deleted.Errors[name])
}

func TestKafkaApiVersionsCoverKafkaGo(t *testing.T) {
	// given the broker
	brokers := testinfra.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}

	// when its API versions are asked for
	resp, err := client.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
	require.NoError(t, err)
	require.NoError(t, resp.Error)

	// then every API that kafka-go v0.4.51's consumer group sends at a fixed
	// old version is still served (Kafka 4.0 dropped many old versions,
	// KIP-896); JoinGroup is negotiated between v1 and v2.
	byName := map[string]kafka.ApiVersionsResponseApiKey{}
	var names []string
	for _, k := range resp.ApiKeys {
		byName[k.ApiName] = k
		names = append(names, fmt.Sprintf("%s[%d-%d]", k.ApiName, k.MinVersion, k.MaxVersion))
	}
	sort.Strings(names)
	t.Logf("broker API versions: %v", names)
	for api, version := range map[string]int{
		"FindCoordinator": 0, "JoinGroup": 2, "SyncGroup": 0, "Heartbeat": 0,
		"LeaveGroup": 0, "OffsetCommit": 2, "OffsetFetch": 1, "ListOffsets": 1,
	} {
		k, ok := byName[api]
		require.True(t, ok, "broker lacks %s", api)
		require.LessOrEqual(t, k.MinVersion, version, "%s v%d (used by kafka-go) no longer served", api, version)
	}
}

func TestRedisPrivateDatabaseWithLua(t *testing.T) {
	// given two private databases
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := testinfra.NewRedis(t)
	b := testinfra.NewRedis(t)
	require.NotEqual(t, a.Options().DB, b.Options().DB, "each NewRedis gets its own database")
	require.NotZero(t, a.Options().DB, "database 0 holds the allocation counter")

	// when a Lua script runs atomically in one of them
	script := redis.NewScript(`
local n = redis.call("INCRBY", KEYS[1], ARGV[1])
redis.call("ZADD", KEYS[2], n, ARGV[2])
return n`)
	for range 3 {
		require.NoError(t, script.Run(ctx, a, []string{"{t}:n", "{t}:z"}, 2, "member").Err())
	}
	n, err := a.Get(ctx, "{t}:n").Int64()
	require.NoError(t, err)

	// then it applied every call, and the other database does not see the keys
	require.Equal(t, int64(6), n)
	score, err := a.ZScore(ctx, "{t}:z", "member").Result()
	require.NoError(t, err)
	require.Equal(t, float64(6), score)
	exists, err := b.Exists(ctx, "{t}:n", "{t}:z").Result()
	require.NoError(t, err)
	require.Zero(t, exists)
}

func newGroupReader(brokers []string, group, topic string) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:        brokers,
		GroupID:        group,
		Topic:          topic,
		StartOffset:    kafka.FirstOffset,
		MinBytes:       1,
		MaxBytes:       1 << 20,
		MaxWait:        100 * time.Millisecond,
		CommitInterval: 0, // synchronous commits
	})
}

func requireHeader(t *testing.T, m kafka.Message, key, want string) {
	t.Helper()
	for _, h := range m.Headers {
		if h.Key == key {
			require.Equal(t, want, string(h.Value))
			return
		}
	}
	require.Failf(t, "missing header", "record at partition %d offset %d has no %s header", m.Partition, m.Offset, key)
}

func TestNewTopicIsServedAtOnce(t *testing.T) {
	brokers := testinfra.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 5 {
		// given a topic just made by NewTopic
		topic := testinfra.NewTopic(t, "compat-ready", 3)

		// when a new client lists its offsets straight away
		client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
		resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			topic: {kafka.FirstOffsetOf(0), kafka.FirstOffsetOf(1), kafka.FirstOffsetOf(2)},
		}})

		// then every partition answers (no NOT_LEADER_OR_FOLLOWER while the broker catches up)
		require.NoError(t, err)
		require.Len(t, resp.Topics[topic], 3)
		for _, p := range resp.Topics[topic] {
			require.NoError(t, p.Error, "partition %d of %s", p.Partition, topic)
		}
	}
}
