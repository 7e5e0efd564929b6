package reporting

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
)

// TestProjectorReadsAsTheConsolePrincipal: on the SASL_SSL listener the
// console's projector reads the log as its own principal, herald-console
// (deps.sh's ACLs are docs/deployment.md's: Read on the events in the
// groups herald-reporting*, Write on the dead-letter topic), and that
// principal cannot append an event.
func TestProjectorReadsAsTheConsolePrincipal(t *testing.T) {
	suffix := "-" + testinfra.UniqueName("console")
	plain := eventlog.DefaultConfig()
	plain.Brokers = testinfra.KafkaBrokers(t)
	plain.Partitions = 2
	plain.EventsTopic = eventlog.TopicEvents + suffix
	plain.DLQTopic = eventlog.TopicDLQ + suffix
	plain.StateTopic = eventlog.TopicState + suffix
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := eventlog.EnsureTopics(ctx, plain, logging.Discard()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := &kafka.Client{Addr: kafka.TCP(plain.Brokers...)}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{
			plain.EventsTopic, plain.DLQTopic, plain.StateTopic}})
	})
	specs := population(5, 12, "RXF")
	total := appendAll(t, plain, specs) // as the harness (the plaintext listener)

	creds := testinfra.KafkaSASL(t, testinfra.PrincipalConsole)
	console := plain
	console.Brokers = creds.Addrs
	console.TLS, console.TLSCAFile = true, creds.CAFile
	console.SASLUser, console.SASLPassword = creds.User, creds.Password
	if err := console.Validate(); err != nil {
		t.Fatal(err)
	}
	store := openStore(t, asOf)
	runProjector(t, store, ProjectorConfig{Log: console, GroupID: DefaultGroupID + "-" + testinfra.UniqueName("sec"), Reference: fakeRef})
	waitEvents(t, store, total)
	waitSummaries(t, store, len(specs))

	w := eventlog.NewWriter(console, "console", telemetry.Nop("reporting-test"))
	defer w.Close()
	err := w.Append(ctx, specs[0].events()[0])
	if err == nil {
		t.Fatal("herald-console appended an event to the log; its ACLs allow reading only")
	}
	if !strings.Contains(err.Error(), "Authorization") {
		t.Fatalf("append as herald-console: got %v, want Kafka's authorization refusal", err)
	}
}
