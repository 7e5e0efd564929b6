package eventlog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/herald-health/herald/platform/mtls"
)

// SASL mechanisms Herald speaks to Kafka.
const (
	SCRAMSHA512 = "SCRAM-SHA-512"
	SCRAMSHA256 = "SCRAM-SHA-256"
)

// validateSecurity checks the TLS and SASL settings; the error names the
// setting.
func (c Config) validateSecurity() []error {
	var errs []error
	if c.TLSCAFile != "" {
		if !c.TLS {
			errs = append(errs, errors.New("setting kafka-tls-ca needs kafka-tls"))
		} else if _, err := mtls.Load(mtls.Files{CAFile: c.TLSCAFile}, mtls.Options{}); err != nil {
			errs = append(errs, fmt.Errorf("setting kafka-tls-ca: %w", err))
		}
	}
	if c.SASLUser == "" && c.SASLPassword != "" {
		errs = append(errs, errors.New("setting kafka-sasl-password-file needs kafka-sasl-user"))
	}
	if c.SASLUser != "" {
		if c.SASLPassword == "" {
			errs = append(errs, errors.New("setting kafka-sasl-user needs kafka-sasl-password-file"))
		}
		if _, err := c.saslMechanism(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Plaintext says why connections to Kafka would not be encrypted and
// authenticated, naming the settings that fix it, or returns "" (see
// servicemain.Security).
func (c Config) Plaintext() string {
	var missing []string
	if !c.TLS {
		missing = append(missing, "kafka-tls")
	}
	if c.SASLUser == "" {
		missing = append(missing, "kafka-sasl-user", "kafka-sasl-password-file")
	}
	if len(missing) == 0 {
		return ""
	}
	return "Kafka connections are not encrypted and authenticated (set " + strings.Join(missing, ", ") + ")"
}

// saslMechanism returns the configured mechanism (nil without a user).
func (c Config) saslMechanism() (sasl.Mechanism, error) {
	if c.SASLUser == "" {
		return nil, nil
	}
	var algo scram.Algorithm
	switch strings.ToUpper(c.SASLMechanism) {
	case "", SCRAMSHA512:
		algo = scram.SHA512
	case SCRAMSHA256:
		algo = scram.SHA256
	default:
		return nil, fmt.Errorf("setting kafka-sasl-mechanism: %q is not supported (want %s or %s)", c.SASLMechanism, SCRAMSHA512, SCRAMSHA256)
	}
	m, err := scram.Mechanism(algo, c.SASLUser, c.SASLPassword)
	if err != nil {
		return nil, fmt.Errorf("settings kafka-sasl-user and kafka-sasl-password-file: %w", err)
	}
	return m, nil
}

// connector is how every connection of one Config is made: dialled, then
// TLS (with the CA bundle current at the handshake), then SASL by kafka-go.
type connector struct {
	dial dialFunc
	sasl sasl.Mechanism
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// connector builds the connector of c. A mechanism that cannot be built
// (Validate refuses it) leaves SASL off, and the broker then refuses the
// connection with an authentication error that names the listener.
func (c Config) connector() connector {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	conn := connector{dial: d.DialContext}
	conn.sasl, _ = c.saslMechanism()
	if c.TLS {
		conn.dial = tlsDialer(c.TLSCAFile, d.DialContext)
	}
	return conn
}

// tlsDialer returns a dial function doing TLS with the CA bundle in
// caFile (the system's roots when empty), loaded at the first dial and
// re-read as it changes.
func tlsDialer(caFile string, base dialFunc) dialFunc {
	var once sync.Once
	var dial dialFunc
	var loadErr error
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		once.Do(func() {
			src := mtls.SystemRoots()
			if caFile != "" {
				src, loadErr = mtls.Load(mtls.Files{CAFile: caFile}, mtls.Options{})
			}
			if loadErr == nil {
				dial = src.Dialer(base, "")
			}
		})
		if loadErr != nil {
			return nil, fmt.Errorf("kafka TLS (setting kafka-tls-ca): %w", loadErr)
		}
		return dial(ctx, network, addr)
	}
}

// newTransport returns a kafka-go transport with c's security.
func (c Config) newTransport(clientID string) *kafka.Transport {
	conn := c.connector()
	return &kafka.Transport{ClientID: clientID, Dial: conn.dial, SASL: conn.sasl}
}

// dialer returns a kafka-go dialer with c's security (consumer groups).
func (c Config) dialer(clientID string) *kafka.Dialer {
	conn := c.connector()
	return &kafka.Dialer{ClientID: clientID, Timeout: 10 * time.Second, DualStack: true, DialFunc: conn.dial, SASLMechanism: conn.sasl}
}

// Client returns a kafka-go client of c's brokers with c's TLS and SASL,
// for adapters that read metadata or offsets themselves, and a function
// that closes its idle connections (call it when done with the client).
func (c Config) Client(timeout time.Duration) (*kafka.Client, func()) {
	t := c.newTransport("herald")
	return &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: timeout, Transport: t}, t.CloseIdleConnections
}
