package testinfra

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Environment variables of the secured test listeners. Each has a default
// derived from the plaintext ones (platform/infra/deps.sh): Kafka's
// SASL_SSL listener on the broker port + 2, the TLS Redis on the Redis port
// + 1, and the certificates and passwords under .deps/secure.
const (
	EnvKafkaSASLBrokers = "HERALD_TEST_KAFKA_SASL_BROKERS"
	EnvRedisTLSAddr     = "HERALD_TEST_REDIS_TLS_ADDR"
	EnvSecureDir        = "HERALD_TEST_SECURE_DIR"
)

// Principals of the test Kafka and Redis, as deps.sh creates them: the
// harness's super user and one per service (the production names).
const (
	PrincipalAdmin           = "herald-admin"
	PrincipalIntake          = "herald-intake"
	PrincipalRules           = "herald-rules"
	PrincipalNotification    = "herald-notification"
	PrincipalAcknowledgement = "herald-acknowledgement"
	PrincipalOperator        = "herald-operator"
	PrincipalConsole         = "herald-console"
)

// Credentials are what a client needs to reach a secured test listener as
// one principal.
type Credentials struct {
	// Addrs are the listener's addresses (host:port).
	Addrs []string
	// CAFile is the development CA's bundle, which signed the servers'
	// certificates.
	CAFile string
	// User and Password are the principal's.
	User, Password string
	// PasswordFile holds Password (for -xxx-password-file flags).
	PasswordFile string
	// CertFile and KeyFile are a client certificate of the same CA (for
	// listeners that accept mutual TLS).
	CertFile, KeyFile string
}

// KafkaSASL returns the SASL_SSL listener of the test Kafka and the
// credentials of user.
func KafkaSASL(t testing.TB, user string) Credentials {
	t.Helper()
	addrs := os.Getenv(EnvKafkaSASLBrokers)
	if addrs == "" {
		addrs = shiftPort(t, KafkaBrokers(t)[0], 2)
	}
	return credentials(t, strings.Split(addrs, ","), "kafka", user)
}

// RedisTLS returns the TLS Redis (ACL users only) and the credentials of
// user.
func RedisTLS(t testing.TB, user string) Credentials {
	t.Helper()
	addr := os.Getenv(EnvRedisTLSAddr)
	if addr == "" {
		addr = shiftPort(t, RedisAddr(t), 1)
	}
	return credentials(t, []string{addr}, "redis", user)
}

// SecureDir returns the folder of the development CA, certificates and
// passwords written by deps.sh.
func SecureDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(EnvSecureDir); d != "" {
		return d
	}
	if d := os.Getenv("HERALD_DEPS_DIR"); d != "" {
		return filepath.Join(d, "secure")
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("find the repository root: %v", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return filepath.Join(dir, ".deps", "secure")
		}
		if filepath.Dir(dir) == dir {
			t.Fatalf("no go.work above %s: set %s (%s)", wd, EnvSecureDir, hint)
			return ""
		}
	}
}

func credentials(t testing.TB, addrs []string, system, user string) Credentials {
	t.Helper()
	dir := SecureDir(t)
	c := Credentials{
		Addrs:        addrs,
		CAFile:       filepath.Join(dir, "tls", "ca.crt"),
		User:         user,
		PasswordFile: filepath.Join(dir, "secrets", system+"-"+user+".password"),
		CertFile:     filepath.Join(dir, "tls", "herald-test-client.crt"),
		KeyFile:      filepath.Join(dir, "tls", "herald-test-client.key"),
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		t.Fatalf("password of %s user %s: %v (%s)", system, user, err, hint)
	}
	c.Password = strings.TrimRight(string(b), "\r\n")
	return c
}

// shiftPort returns addr with its port moved by delta.
func shiftPort(t testing.TB, addr string, delta int) string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+delta))
}
