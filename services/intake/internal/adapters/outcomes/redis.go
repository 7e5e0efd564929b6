// Package outcomes keeps intake's record of accepted messages in Redis, so a
// resend is answered with the original outcome by any replica, after a
// restart too. Redis is a cache here: if it is lost, a resend is appended
// again with the same deterministic event ids and consumers skip it.
package outcomes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-health/herald/services/intake/internal/app"
)

// Store is an app.OutcomeStore on Redis. Keys are "<prefix><key>" where
// key is already a hash of the channel, sender and message id, so no
// patient data is in a key.
type Store struct {
	pipes  pipeliner
	prefix string
	ttl    time.Duration
}

// pipeliner runs a pipeline: a redis.UniversalClient, or a
// redisbatch.Batcher that lets the calls of concurrent messages share
// round trips.
type pipeliner interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// New returns a Store on p writing keys under prefix that expire after ttl.
func New(p pipeliner, prefix string, ttl time.Duration) *Store {
	return &Store{pipes: p, prefix: prefix, ttl: ttl}
}

// Get returns the record of key, if any.
func (s *Store) Get(ctx context.Context, key string) (app.Record, bool, error) {
	var get *redis.StringCmd
	_, err := s.pipes.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, s.prefix+key)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return app.Record{}, false, nil
	}
	if err != nil {
		return app.Record{}, false, fmt.Errorf("get outcome %s: %w", key, err)
	}
	var r app.Record
	if err := json.Unmarshal([]byte(get.Val()), &r); err != nil {
		return app.Record{}, false, fmt.Errorf("decode outcome %s: %w", key, err)
	}
	return r, true, nil
}

// Put stores the record of key. The first record wins: a concurrent
// duplicate on another replica does not overwrite it.
func (s *Store) Put(ctx context.Context, key string, r app.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode outcome %s: %w", key, err)
	}
	_, err = s.pipes.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SetNX(ctx, s.prefix+key, b, s.ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("put outcome %s: %w", key, err)
	}
	return nil
}
