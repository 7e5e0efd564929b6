package timers

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// ErrEpochChanged is returned by Rearmed when Redis lost its data again
// while the owner was re-arming: re-arm once more.
var ErrEpochChanged = errors.New("timer store epoch changed during re-arm")

// Epoch is the result of CheckEpoch.
type Epoch struct {
	// Lost is true when timers this process armed may be gone: an epoch key
	// was missing (Redis was wiped, failed over to an empty replica, or this
	// is the very first start), or it differs from the one this Store last
	// acknowledged (another replica found a wipe and recreated it).
	Lost bool
	ids  []string
}

// CheckEpoch detects a wiped Redis. Each shard has an epoch key holding a
// random id, created when missing (so recreated at once after a wipe).
//
// The contract for the owner of the timers:
//
//  1. Call CheckEpoch at start-up and periodically (the Poller does it
//     when PollerConfig.OnEpochLost is set).
//  2. When Lost, re-arm every open timer from the durable log or state
//     (deadlines first; ArmMany is idempotent, so re-arming timers that
//     survived is harmless), then call Rearmed with the same Epoch.
//  3. Until Rearmed succeeds, CheckEpoch keeps reporting Lost, so a failed
//     re-arm is retried; if Redis was wiped again meanwhile, Rearmed returns
//     ErrEpochChanged.
//
// The first CheckEpoch of a Store that finds the keys present adopts them
// without reporting Lost: a new process cannot tell whether a wipe happened
// before it started, so an owner that takes over work from another process
// (e.g. on Kafka partition assignment) re-arms that work's timers anyway.
func (s *Store) CheckEpoch(ctx context.Context) (Epoch, error) {
	e := Epoch{ids: make([]string, s.cfg.Shards)}
	created := false
	fresh := newToken()
	for i := range s.cfg.Shards {
		res, err := epochScript.Run(ctx, s.rdb, s.keys[i], fresh).Slice()
		if err != nil {
			return Epoch{}, fmt.Errorf("check timer epoch on redis %s: %w", s.addr, err)
		}
		if len(res) != 2 {
			return Epoch{}, fmt.Errorf("check timer epoch on redis %s: unexpected reply of %d elements", s.addr, len(res))
		}
		e.ids[i], _ = res[0].(string)
		if n, _ := res[1].(int64); n == 1 {
			created = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	first := slices.Equal(s.epoch, make([]string, s.cfg.Shards))
	switch {
	case created:
		e.Lost = true
	case first:
		copy(s.epoch, e.ids)
	default:
		e.Lost = !slices.Equal(s.epoch, e.ids)
	}
	return e, nil
}

// Rearmed records that the owner re-armed every open timer after e reported
// Lost. It returns ErrEpochChanged if the epoch changed since e was read
// (another wipe): check and re-arm again.
func (s *Store) Rearmed(ctx context.Context, e Epoch) error {
	now, err := s.epochIDs(ctx)
	if err != nil {
		return err
	}
	if !slices.Equal(now, e.ids) {
		return fmt.Errorf("acknowledge timer epoch on redis %s: %w", s.addr, ErrEpochChanged)
	}
	s.mu.Lock()
	copy(s.epoch, e.ids)
	s.mu.Unlock()
	return nil
}

// epochIDs reads the epoch ids of every shard without creating any
// (a missing key reads as "").
func (s *Store) epochIDs(ctx context.Context) ([]string, error) {
	ids := make([]string, s.cfg.Shards)
	for i := range s.cfg.Shards {
		v, err := s.rdb.Get(ctx, s.keys[i][keyEpoch]).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read timer epoch on redis %s: %w", s.addr, err)
		}
		ids[i] = v
	}
	return ids, nil
}
