package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpecs returns the topics Herald needs, shaped by cfg: the events and
// dead-letter topics keep records for cfg.Retention (forever when 0), the
// state topic is compacted.
func TopicSpecs(cfg Config) []kafka.TopicConfig {
	retention := "-1"
	if cfg.Retention > 0 {
		retention = strconv.FormatInt(cfg.Retention.Milliseconds(), 10)
	}
	isr := strconv.Itoa(cfg.MinInsyncReplicas)
	return []kafka.TopicConfig{
		{Topic: cfg.EventsTopic, NumPartitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor, ConfigEntries: []kafka.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "delete"},
			{ConfigName: "retention.ms", ConfigValue: retention},
			{ConfigName: "min.insync.replicas", ConfigValue: isr},
		}},
		{Topic: cfg.DLQTopic, NumPartitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor, ConfigEntries: []kafka.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "delete"},
			{ConfigName: "retention.ms", ConfigValue: retention},
			{ConfigName: "min.insync.replicas", ConfigValue: isr},
		}},
		{Topic: cfg.StateTopic, NumPartitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor, ConfigEntries: []kafka.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "compact"},
			{ConfigName: "min.insync.replicas", ConfigValue: isr},
		}},
	}
}

// EnsureTopics creates the topics that are missing and checks those that
// exist. While the brokers cannot be reached it logs the address and retries
// with backoff until ctx ends; the error then names the brokers.
func EnsureTopics(ctx context.Context, cfg Config, logger *slog.Logger) error {
	return EnsureTopicSpecs(ctx, cfg, TopicSpecs(cfg), logger)
}

// EnsureTopicSpecs is EnsureTopics for other topics than the log's own
// (the audit stream's).
func EnsureTopicSpecs(ctx context.Context, cfg Config, specs []kafka.TopicConfig, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Topic
	}
	client, closeIdle := cfg.Client(10 * time.Second)
	defer closeIdle()
	backoff := 100 * time.Millisecond
	for {
		err := ensureOnce(ctx, client, specs, names, logger)
		if err == nil {
			err = servedOnce(ctx, client, names)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ensure topics on kafka %v: %w", cfg.Brokers, err)
		}
		logger.Warn("kafka not ready; retrying", "brokers", cfg.Brokers, "error", err, "retry_in", backoff.String())
		if !sleep(ctx, backoff) {
			return fmt.Errorf("ensure topics on kafka %v: %w", cfg.Brokers, err)
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// servedOnce reports whether every topic in names is served: listed
// without error by the broker answering, with a leader for each partition.
// CreateTopics returns once the controller has committed a topic; brokers
// serve it a moment later, and a producer or a group that is quicker is
// refused with UNKNOWN_TOPIC_OR_PARTITION. So EnsureTopics returns only
// once the topics can be used.
func servedOnce(ctx context.Context, client *kafka.Client, names []string) error {
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return fmt.Errorf("read metadata: %w", err)
	}
	served := map[string]bool{}
	for _, t := range meta.Topics {
		if t.Error != nil || len(t.Partitions) == 0 {
			continue
		}
		leaders := true
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				leaders = false
			}
		}
		served[t.Name] = leaders
	}
	for _, n := range names {
		if !served[n] {
			return fmt.Errorf("topic %s is not served yet", n)
		}
	}
	return nil
}

func ensureOnce(ctx context.Context, client *kafka.Client, specs []kafka.TopicConfig, names []string, logger *slog.Logger) error {
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return fmt.Errorf("read metadata: %w", err)
	}
	existing := map[string]int{}
	for _, t := range meta.Topics {
		if t.Error == nil {
			existing[t.Name] = len(t.Partitions)
		}
	}
	var missing []kafka.TopicConfig
	for _, s := range specs {
		n, ok := existing[s.Topic]
		switch {
		case !ok:
			missing = append(missing, s)
		case n != s.NumPartitions:
			logger.Warn("topic has a different partition count than configured; keeping it", "topic", s.Topic, "partitions", n, "configured", s.NumPartitions)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: missing})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var errs []error
	for _, s := range missing {
		e := resp.Errors[s.Topic]
		if errors.Is(e, kafka.TopicAlreadyExists) {
			continue // another replica created it
		}
		if e != nil {
			errs = append(errs, fmt.Errorf("create topic %s: %w", s.Topic, e))
			continue
		}
		logger.Info("topic created", "topic", s.Topic, "partitions", s.NumPartitions, "replication_factor", s.ReplicationFactor)
	}
	return errors.Join(errs...)
}
