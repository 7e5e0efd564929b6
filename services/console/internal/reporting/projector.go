package reporting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/telemetry"
)

// ProjectorConfig configures a Projector.
type ProjectorConfig struct {
	// Log locates the event log.
	Log eventlog.Config
	// GroupID prefixes the consumer group, which is GroupID-g<generation>
	// (default herald-reporting).
	GroupID string
	// Lanes per partition handled at once (default 256): the concurrent
	// records whose events share a batch.
	Lanes int
	// MaxBatch events per transaction (default 1000) and Linger, how long a
	// batch waits for more events once it has one (default 5 ms).
	MaxBatch int
	Linger   time.Duration
	// Writers: batches written at once (default 4). An alert's events are
	// in one lane, so two batches in flight never hold events of one alert
	// (and if they did, per-alert locks would order them).
	Writers int
	// GenerationPoll: how often an idle projector looks for a rebuild
	// (default 2 s).
	GenerationPoll time.Duration
	// Reference gives an alert's reference (alertref.Key.Ref); nil: none.
	Reference func(alertID string) string
	Logger    *slog.Logger
	Telemetry *telemetry.Telemetry

	// hooks run inside each batch's transaction (after the events are
	// stored; before the commit), and afterCommit after it commits (tests
	// kill the projector there).
	hooks       writeHooks
	afterCommit func(ctx context.Context, events int) error
	// onWrite is told of each batch written and how long it took (benchmarks).
	onWrite func(events int, d time.Duration)
}

// DefaultGroupID prefixes the projector's consumer groups.
const DefaultGroupID = "herald-reporting"

func (c *ProjectorConfig) defaults() {
	if c.GroupID == "" {
		c.GroupID = DefaultGroupID
	}
	if c.Lanes <= 0 {
		c.Lanes = 256
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1000
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.Writers <= 0 {
		c.Writers = 4
	}
	if c.GenerationPoll <= 0 {
		c.GenerationPoll = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Projector feeds the read model from the event log: its own consumer
// group, records handled by lanes whose events are written in shared
// batches (one transaction each), offsets committed only after the batch
// that holds them has committed. Idempotent: an event is stored once by its
// id, and a summary is recomputed from every stored event of its alert, so
// redelivery (a crash between the database commit and the offset commit)
// converges on the same rows.
type Projector struct {
	store *Store
	cfg   ProjectorConfig
	in    chan item
}

type item struct {
	gen  int64
	ev   Event
	done chan error
}

// NewProjector returns a projector writing to store.
func NewProjector(store *Store, cfg ProjectorConfig) *Projector {
	cfg.defaults()
	return &Projector{store: store, cfg: cfg, in: make(chan item, cfg.MaxBatch)}
}

// Run consumes until ctx is done (then it returns nil). After a Rebuild it
// starts again from the beginning of the log under the new generation's
// consumer group.
func (p *Projector) Run(ctx context.Context) error {
	go p.batches(ctx)
	for ctx.Err() == nil {
		gen, err := p.store.Generation(ctx)
		if err != nil {
			p.cfg.Logger.Warn("reporting projector: read generation", "error", err)
			if !sleep(ctx, p.cfg.GenerationPoll) {
				break
			}
			continue
		}
		gctx, cancel := context.WithCancel(ctx)
		go p.watch(gctx, cancel, gen)
		group := p.cfg.GroupID + "-g" + strconv.FormatInt(gen, 10)
		p.cfg.Logger.Info("reporting projector: consuming", "group", group)
		err = eventlog.Consume(gctx, eventlog.ConsumerConfig{
			Config: p.cfg.Log, GroupID: group, Lanes: p.cfg.Lanes,
			Logger: p.cfg.Logger, Telemetry: p.cfg.Telemetry,
		}, func(ctx context.Context, d eventlog.Delivery) error { return p.handle(ctx, gen, d) })
		cancel()
		if err != nil {
			return fmt.Errorf("reporting projector: %w", err)
		}
	}
	return nil
}

// watch cancels the generation's consumer when the generation changes.
func (p *Projector) watch(ctx context.Context, cancel func(), gen int64) {
	for sleep(ctx, p.cfg.GenerationPoll) {
		if g, err := p.store.Generation(ctx); err == nil && g != gen {
			p.cfg.Logger.Info("reporting projector: the store was rebuilt; replaying the log", "generation", g)
			cancel()
			return
		}
	}
}

// handle submits one record to the next batch and returns once the batch
// is committed (so the consumer commits its offset only then).
func (p *Projector) handle(ctx context.Context, gen int64, d eventlog.Delivery) error {
	ev, ok := FromProto(d.Event, d.Type, d.Partition, d.Offset)
	if !ok {
		return nil // nothing the read model keeps
	}
	it := item{gen: gen, ev: ev, done: make(chan error, 1)}
	select {
	case p.in <- it:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// batches collects submitted events into batches: a batch closes at
// MaxBatch events, Linger after its first, or when its generation differs.
// Writers batches are written at once; while all are busy, records arriving
// make the next batch larger.
func (p *Projector) batches(ctx context.Context) {
	work := make(chan []item)
	defer close(work)
	for range p.cfg.Writers {
		go func() {
			for b := range work {
				p.flush(ctx, b)
			}
		}()
	}
	var batch []item
	for {
		if len(batch) == 0 {
			select {
			case it := <-p.in:
				batch = append(batch, it)
			case <-ctx.Done():
				return
			}
		}
		timer := time.NewTimer(p.cfg.Linger)
	collect:
		for len(batch) < p.cfg.MaxBatch {
			select {
			case it := <-p.in:
				batch = append(batch, it)
			case <-timer.C:
				break collect
			case <-ctx.Done():
				timer.Stop()
				p.finish(batch, ctx.Err())
				return
			}
		}
		timer.Stop()
		// Items of one generation per write.
		n := 0
		for n < len(batch) && batch[n].gen == batch[0].gen {
			n++
		}
		select {
		case work <- batch[:n]:
		case <-ctx.Done():
			p.finish(batch, ctx.Err())
			return
		}
		batch = append(batch[:0:0], batch[n:]...)
	}
}

func (p *Projector) flush(ctx context.Context, batch []item) {
	events := make([]Event, len(batch))
	for i, it := range batch {
		events[i] = it.ev
	}
	start := time.Now()
	_, err := p.store.write(ctx, batch[0].gen, events, p.cfg.Reference, p.cfg.hooks)
	if err == nil && p.cfg.onWrite != nil {
		p.cfg.onWrite(len(events), time.Since(start))
	}
	if err == nil && p.cfg.afterCommit != nil {
		err = p.cfg.afterCommit(ctx, len(events))
	}
	if err != nil && !errors.Is(err, errGeneration) && ctx.Err() == nil {
		p.cfg.Logger.Warn("reporting projector: write batch", "events", len(events), "error", err)
	}
	p.finish(batch, err)
}

func (p *Projector) finish(batch []item, err error) {
	for _, it := range batch {
		it.done <- err
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
