// Package eventlog is Herald's event log on Kafka (github.com/segmentio/kafka-go):
// one topic of protobuf herald.events.v1.Event records keyed by alert id, a
// dead-letter topic and a compacted state topic.
//
// Security: with TLS and a SASL user (Config.TLS, Config.SASLUser) every
// connection (producer, consumer group, fetches, dead-letter writer, state
// topic reads and topic administration) is SASL_SSL: SCRAM over TLS, as the
// service's own principal, whose ACLs say which topics and group it may
// use (docs/deployment.md).
//
// Signing: with Config.SigningKeyFile a Writer signs every record it
// writes, and with Config.VerifyKeysFile every reader (Consume, Tail,
// ReadTopic) refuses a record not signed by a service that may produce it
// (platform/eventsign; signing.go): Consume dead-letters it with the
// reason, the others skip it, and every refusal is logged and counted
// (herald_events_refused_total, by path; Config.Observed). The key files
// are re-read when they change (Config.KeysCheckEvery).
//
// Guarantees: Writer.Append returns only after every replica in sync has the
// records (acks=all). Consume is at least once: fetch, handle, then commit;
// a handler must be idempotent (skip event ids it has applied). kafka-go has
// no idempotent producer, so a retried append may write a record twice:
// consumers must not care. A record that can never be handled goes to the
// dead-letter topic with the reason, and the consumer moves on; nothing is
// dropped silently. W3C trace context travels in the record headers.
//
// Fetching: a consumer fetches all the partitions it holds on one broker in
// one request and, under load, lingers 3 ms between fetches so that each
// carries many records (ConsumerConfig.FetchLinger). A partition
// whose queue of fetched records is more than half full is left out of the
// next fetch, so a slow partition never holds up the others.
//
// Appending: concurrent appends of a process share produce requests (a
// group commit), and under load the producer waits up to 5 ms for more
// writes before the next request (the Java producer's default linger.ms
// since Kafka 4.0, which it waits for every batch).
//
// Failover: a consumer that dies without leaving its group (SIGKILL)
// holds its partitions for the session timeout (6 s by default, the
// broker's least) plus a heartbeat (a tenth of it); a handler cut short by
// the end of its generation is logged and its record left uncommitted.
//
// Read-your-writes: Tail returns one key's records that a consumer group
// has not committed past, so a projection kept by that group plus those
// records is the key's state as the log has it, whatever the group's lag.
//
// Order: the events of one alert are handled in log order. By default a
// partition's records are handled one at a time; with ConsumerConfig.Lanes
// several alerts of a partition are handled at once, and the committed
// offset never passes a record still being handled.
package eventlog

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/telemetry"
)

// Topic names.
const (
	TopicEvents = "herald.alert-events.v1"
	TopicDLQ    = "herald.alert-events.dlq.v1"
	TopicState  = "herald.alert-state.v1"
)

// Header names set on every record.
const (
	HeaderEventType = "herald-event-type"
	HeaderEventID   = "herald-event-id"
	HeaderDLQReason = "herald-dlq-reason"
	HeaderDLQSource = "herald-dlq-source"
)

// Config locates the log and shapes its topics.
type Config struct {
	Brokers     []string
	EventsTopic string
	DLQTopic    string
	StateTopic  string
	// Partitions of the events and state topics when Herald creates them.
	Partitions int
	// ReplicationFactor of created topics: 3 in production, 1 on a dev broker.
	ReplicationFactor int
	// MinInsyncReplicas of created topics: 2 in production with acks=all.
	MinInsyncReplicas int
	// Retention of the events and dead-letter topics; 0 keeps records forever.
	// Clinical records are kept for years: never set this to days.
	Retention time.Duration
	// SessionTimeout: how soon a dead consumer's partitions move to another
	// (default 6 s, the broker's least by default, group.min.session.timeout.ms).
	// A replica killed without leaving the group (SIGKILL, a node lost)
	// holds its partitions until then; its survivors take them over within
	// SessionTimeout + HeartbeatInterval + a join (docs/performance.md,
	// "Failover"). A clean shutdown leaves the group at once.
	SessionTimeout time.Duration

	// TLS encrypts every connection to the brokers, verified against
	// TLSCAFile (the system's roots when empty), re-read when it changes.
	TLS       bool
	TLSCAFile string
	// SASLUser and SASLPassword authenticate the service's own principal
	// (one per service, with ACLs on what it may read and write) with
	// SASLMechanism: SCRAM-SHA-512 (the default) or SCRAM-SHA-256. With TLS
	// this is Kafka's SASL_SSL.
	SASLMechanism string
	SASLUser      string
	SASLPassword  string

	// SigningKeyFile is the service's Ed25519 private key (PEM PKCS #8):
	// every record its Writer writes is signed with it (platform/eventsign).
	SigningKeyFile string
	// VerifyKeysFile is the key set (public keys, each bound to a service
	// identity) that readers verify records against: an unsigned, wrongly
	// signed or wrongly attributed record is dead-lettered, never applied.
	// Without it a reader accepts every record (development only: the
	// production profile refuses to start, see Signing).
	VerifyKeysFile string
	// KeysCheckEvery is the longest a change of the key files goes
	// unnoticed (default eventsign.DefaultCheckEvery): both are re-read
	// without a restart, so a key rotation is a change of the Secret.
	KeysCheckEvery time.Duration

	// obsLog and obsTel record refusals and key reloads (Observed).
	obsLog *slog.Logger
	obsTel *telemetry.Telemetry
}

// DefaultSessionTimeout is the consumer groups' session timeout: the
// broker's default minimum (group.min.session.timeout.ms = 6 s), so that a
// SIGKILLed replica's partitions move as soon as Kafka allows.
const DefaultSessionTimeout = 6 * time.Second

// HeartbeatInterval is how often a member of a consumer group heartbeats
// for a session timeout: a tenth of it (600 ms at 6 s), so a survivor
// learns of a rebalance within that and the broker sees several missed
// heartbeats before it gives a live member up (Kafka asks for at most a
// third).
func HeartbeatInterval(session time.Duration) time.Duration {
	return max(session/10, 100*time.Millisecond)
}

// DefaultConfig is a single local broker.
func DefaultConfig() Config {
	return Config{
		Brokers:           []string{"127.0.0.1:9092"},
		EventsTopic:       TopicEvents,
		DLQTopic:          TopicDLQ,
		StateTopic:        TopicState,
		Partitions:        12,
		ReplicationFactor: 1,
		MinInsyncReplicas: 1,
		Retention:         0,
		SessionTimeout:    DefaultSessionTimeout,
	}
}

// RegisterFlags binds the settings to fs (environment fallback HERALD_KAFKA_...).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Var((*config.StringList)(&c.Brokers), "kafka-brokers", "Kafka bootstrap brokers, comma-separated host:port")
	fs.StringVar(&c.EventsTopic, "kafka-events-topic", c.EventsTopic, "alert event topic")
	fs.StringVar(&c.DLQTopic, "kafka-dlq-topic", c.DLQTopic, "dead-letter topic")
	fs.StringVar(&c.StateTopic, "kafka-state-topic", c.StateTopic, "compacted alert state topic")
	fs.IntVar(&c.Partitions, "kafka-partitions", c.Partitions, "partitions of topics Herald creates")
	fs.IntVar(&c.ReplicationFactor, "kafka-replication-factor", c.ReplicationFactor, "replication factor of topics Herald creates (3 in production)")
	fs.IntVar(&c.MinInsyncReplicas, "kafka-min-insync-replicas", c.MinInsyncReplicas, "min.insync.replicas of topics Herald creates (2 in production)")
	fs.DurationVar(&c.Retention, "kafka-retention", c.Retention, "retention of the event log; 0 keeps records forever")
	fs.DurationVar(&c.SessionTimeout, "kafka-session-timeout", c.SessionTimeout, "consumer group session timeout")
	fs.BoolVar(&c.TLS, "kafka-tls", c.TLS, "connect to Kafka over TLS (with kafka-sasl-user: SASL_SSL)")
	fs.StringVar(&c.TLSCAFile, "kafka-tls-ca", c.TLSCAFile, "CA bundle (PEM) verifying the brokers (empty: the system's roots); reloaded when the file changes")
	fs.StringVar(&c.SASLMechanism, "kafka-sasl-mechanism", c.SASLMechanism, "SASL mechanism: SCRAM-SHA-512 (default) or SCRAM-SHA-256")
	fs.StringVar(&c.SASLUser, "kafka-sasl-user", c.SASLUser, "the service's Kafka principal (SCRAM user)")
	config.SecretFile(fs, &c.SASLPassword, "kafka-sasl-password", "password of kafka-sasl-user")
	fs.StringVar(&c.SigningKeyFile, "event-signing-key-file", c.SigningKeyFile, "the service's Ed25519 private key (PEM PKCS #8) signing every record it appends (required in production)")
	fs.StringVar(&c.VerifyKeysFile, "event-verify-keys-file", c.VerifyKeysFile, "key set (YAML: service, kid, public_key; a file or a directory of them) every record read is verified against (required in production)")
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("setting kafka-brokers (HERALD_KAFKA_BROKERS) is required"))
	}
	for name, v := range map[string]string{"kafka-events-topic": c.EventsTopic, "kafka-dlq-topic": c.DLQTopic, "kafka-state-topic": c.StateTopic} {
		if v == "" {
			errs = append(errs, fmt.Errorf("setting %s is required", name))
		}
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("setting kafka-partitions must be at least 1, got %d", c.Partitions))
	}
	if c.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("setting kafka-replication-factor must be at least 1, got %d", c.ReplicationFactor))
	}
	if c.MinInsyncReplicas < 1 || c.MinInsyncReplicas > c.ReplicationFactor {
		errs = append(errs, fmt.Errorf("setting kafka-min-insync-replicas must be between 1 and the replication factor %d, got %d", c.ReplicationFactor, c.MinInsyncReplicas))
	}
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("setting kafka-retention must not be negative, got %v", c.Retention))
	}
	if c.SessionTimeout < 6*time.Second {
		errs = append(errs, fmt.Errorf("setting kafka-session-timeout must be at least 6s (the broker's minimum), got %v", c.SessionTimeout))
	}
	errs = append(errs, c.validateSecurity()...)
	errs = append(errs, c.validateSigning()...)
	return errors.Join(errs...)
}
