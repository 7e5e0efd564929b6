package ctl

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventtype"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func tailCommand() command {
	return command{
		name:    "tail",
		summary: "follow the event log, decoded, one line per event",
		usage: `heraldctl tail: follow herald.alert-events.v1 as events are appended.

  heraldctl tail                        new events from now on
  heraldctl tail -from-beginning        the whole log, then follow
  heraldctl tail -alert ALERT_ID        one alert's events

Under make run it follows that run's embedded broker (found through the run's state file).

Each line shows time, event type, alert, tenant and a summary without patient data. -payload prints
each event in full as JSON: that includes patient data, so use it only where you may see it.
`,
		run: runTail,
	}
}

func runTail(ctx context.Context, e *env, args []string) error {
	c := tailCommand()
	fs := newFlags(c, e)
	brokers := config.StringList(strings.Split(e.addrs.kafka, ","))
	fs.Var(&brokers, "brokers", "Kafka brokers")
	topic := fs.String("topic", eventlog.TopicEvents, "topic to follow")
	fromBeginning := fs.Bool("from-beginning", false, "start at the beginning of the log")
	alert := fs.String("alert", "", "only this alert's events")
	payload := fs.Bool("payload", false, "print full events as JSON (contains patient data)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	// Fail fast, not retry forever, when nothing listens there.
	conn, err := net.DialTimeout("tcp", brokers[0], 3*time.Second)
	if err != nil {
		return fmt.Errorf("the Kafka broker %s (address from %s) is not reachable: is Herald running (make run)? Otherwise pass -brokers or set HERALD_CTL_KAFKA", brokers[0], e.addrs.from)
	}
	_ = conn.Close()
	cfg, err := kafkaConfig(brokers, *topic)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	return eventlog.Consume(ctx, eventlog.ConsumerConfig{
		Config:     cfg,
		GroupID:    fmt.Sprintf("heraldctl-tail-%d", time.Now().UnixNano()),
		StartAtEnd: !*fromBeginning,
	}, func(_ context.Context, d eventlog.Delivery) error {
		if *alert != "" && d.Event.GetAlertId() != *alert {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if *payload {
			b, err := protojson.Marshal(d.Event)
			if err != nil {
				return eventlog.Permanent(err)
			}
			fmt.Fprintln(e.out, string(b))
			return nil
		}
		fmt.Fprintln(e.out, Line(d.Event))
		return nil
	})
}

// Line renders an event as one line without patient data: time, type,
// alert id, tenant and a type-specific summary.
func Line(ev *eventsv1.Event) string {
	return fmt.Sprintf("%s  %-22s %s %s  %s", ev.GetOccurredAt().AsTime().Local().Format("15:04:05.000"),
		eventlog.TypeOf(ev), ev.GetAlertId(), ev.GetTenant(), Summary(ev))
}

// Summary describes an event for people, using identifiers, categories,
// steps, channels and reasons only: never patient details or report text
// (eventtype.Summary, which the audit export shares).
func Summary(ev *eventsv1.Event) string { return eventtype.Summary(ev) }

func channel(c eventsv1.Channel) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CHANNEL_"))
}
