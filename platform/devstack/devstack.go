// Package devstack runs Herald's infrastructure in-process for `make run`
// and quick demos: a Kafka-protocol broker (franz-go's kfake) and a Redis
// (miniredis), both on loopback. It imports no service.
//
// It is for development only: kfake keeps everything in memory and is more
// lenient than a real broker, and miniredis sorts a whole sorted set on every
// range call. Tests of Herald itself run against real Kafka and Redis.
package devstack

import (
	"fmt"
	"strconv"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Config chooses ports; 0 picks free ones.
type Config struct {
	KafkaPort int
	RedisPort int
}

// Stack is a running embedded Kafka and Redis.
type Stack struct {
	KafkaBrokers []string
	RedisAddr    string

	kafka *kfake.Cluster
	redis *miniredis.Miniredis
}

// Start starts the broker and Redis. Close stops them.
func Start(cfg Config) (*Stack, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.DefaultNumPartitions(12)}
	if cfg.KafkaPort != 0 {
		opts = append(opts, kfake.Ports(cfg.KafkaPort))
	}
	k, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka broker: %w", err)
	}
	r := miniredis.NewMiniRedis()
	addr := "127.0.0.1:" + strconv.Itoa(cfg.RedisPort)
	if err := r.StartAddr(addr); err != nil {
		k.Close()
		return nil, fmt.Errorf("start embedded redis on %s: %w", addr, err)
	}
	return &Stack{KafkaBrokers: k.ListenAddrs(), RedisAddr: r.Addr(), kafka: k, redis: r}, nil
}

// Redis returns the embedded Redis, for tools that want to inspect it.
func (s *Stack) Redis() *miniredis.Miniredis { return s.redis }

// Close stops Redis, then the broker.
func (s *Stack) Close() {
	s.redis.Close()
	s.kafka.Close()
}
