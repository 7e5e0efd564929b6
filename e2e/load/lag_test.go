package load

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-health/herald/platform/eventlog"
)

// lagSample is the consumer lag of each service's group at one moment:
// records on the events topic not yet committed by the group.
type lagSample struct {
	at  time.Time
	lag map[string]int64 // by service
	// jobs are the notification jobs scheduled and not done (its Redis
	// sorted sets <prefix>:due and <prefix>:due:critical); ready are those
	// due now (not leased).
	jobs, ready int64
}

// lagSampler polls the groups' committed offsets against the topic's end
// every interval until stopped. Groups commit every 50 ms, so a sample is
// at most that stale.
type lagSampler struct {
	mu      sync.Mutex
	samples []lagSample
	stop    func()
	done    chan struct{}
}

func sampleLag(ctx context.Context, cfg eventlog.Config, groups map[string]string, rdb *redis.Client, dueKey string, every time.Duration) *lagSampler {
	ctx, cancel := context.WithCancel(ctx)
	l := &lagSampler{stop: cancel, done: make(chan struct{})}
	c := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 5 * time.Second, Transport: &kafka.Transport{}}
	parts := make([]int, cfg.Partitions)
	reqs := make([]kafka.OffsetRequest, cfg.Partitions)
	for p := range cfg.Partitions {
		parts[p] = p
		reqs[p] = kafka.LastOffsetOf(p)
	}
	go func() {
		defer close(l.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ends, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{cfg.EventsTopic: reqs}})
			if err != nil {
				continue
			}
			end := map[int]int64{}
			for _, po := range ends.Topics[cfg.EventsTopic] {
				end[po.Partition] = po.LastOffset
			}
			s := lagSample{at: time.Now(), lag: map[string]int64{}}
			for svc, group := range groups {
				resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{cfg.EventsTopic: parts}})
				if err != nil || resp.Error != nil {
					continue
				}
				var lag int64
				for _, p := range resp.Topics[cfg.EventsTopic] {
					committed := max(p.CommittedOffset, 0)
					lag += max(end[p.Partition]-committed, 0)
				}
				s.lag[svc] = lag
			}
			for _, key := range []string{dueKey, dueKey + ":critical"} {
				jobs, _ := rdb.ZCard(ctx, key).Result()
				ready, _ := rdb.ZCount(ctx, key, "-inf", strconv.FormatInt(time.Now().UnixMilli(), 10)).Result()
				s.jobs, s.ready = s.jobs+jobs, s.ready+ready
			}
			l.mu.Lock()
			l.samples = append(l.samples, s)
			l.mu.Unlock()
		}
	}()
	return l
}

// finish stops sampling and returns the samples.
func (l *lagSampler) finish() []lagSample {
	l.stop()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.samples
}
