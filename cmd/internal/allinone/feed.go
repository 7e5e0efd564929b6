package allinone

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/herald-health/herald/cmd/internal/ctl"
	"github.com/herald-health/herald/platform/eventlog"
)

// feed prints every event appended to the log, one line each, without
// patient data (the same lines as `heraldctl tail`).
func feed(ctx context.Context, cfg eventlog.Config, out io.Writer) {
	var mu sync.Mutex
	_ = eventlog.Consume(ctx, eventlog.ConsumerConfig{
		Config:  cfg,
		GroupID: fmt.Sprintf("allinone-feed-%d", time.Now().UnixNano()),
	}, func(_ context.Context, d eventlog.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(out, ctl.Line(d.Event))
		return nil
	})
}
