// Package redisconn is how every Herald service connects to Redis: one
// set of flags (address, database, ACL user, password from a file, TLS)
// and the go-redis options they make. With TLS the server is verified
// against a CA bundle (or the system's roots) that is re-read when it
// changes, and the service may present a client certificate when the
// server asks for one; with an ACL user each service reaches only its own
// keys (docs/deployment.md).
package redisconn

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/mtls"
)

// Config locates a Redis and says how to authenticate to it.
type Config struct {
	// Addr is host:port.
	Addr string
	// DB is the database number (0 on Redis Cluster).
	DB int
	// Username is the ACL user; empty means Redis's "default" user.
	Username string
	// Password is the user's password (flag redis-password-file).
	Password string
	// TLS encrypts the connection; TLSCAFile verifies the server (the
	// system's roots when empty). TLSCertFile and TLSKeyFile are a client
	// certificate for a server that asks for one (tls-auth-clients).
	TLS                     bool
	TLSCAFile               string
	TLSCertFile, TLSKeyFile string
}

// RegisterFlags binds the settings to fs: redis-addr, redis-db,
// redis-user, redis-password-file, redis-tls, redis-tls-ca,
// redis-tls-cert and redis-tls-key (environment fallback HERALD_REDIS_...).
// The values already in c are the defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "redis-addr", c.Addr, "Redis address host:port")
	fs.IntVar(&c.DB, "redis-db", c.DB, "Redis database number")
	fs.StringVar(&c.Username, "redis-user", c.Username, "Redis ACL user (empty: the default user)")
	config.SecretFile(fs, &c.Password, "redis-password", "password of redis-user")
	fs.BoolVar(&c.TLS, "redis-tls", c.TLS, "connect to Redis over TLS")
	fs.StringVar(&c.TLSCAFile, "redis-tls-ca", c.TLSCAFile, "CA bundle (PEM) verifying Redis (empty: the system's roots); reloaded when the file changes")
	fs.StringVar(&c.TLSCertFile, "redis-tls-cert", c.TLSCertFile, "client certificate (PEM) for a Redis that asks for one; reloaded when the file changes")
	fs.StringVar(&c.TLSKeyFile, "redis-tls-key", c.TLSKeyFile, "key of redis-tls-cert (PEM)")
}

// Validate names the setting at fault. It loads the TLS files once, so a
// missing or unreadable file stops the service at start.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Addr) == "" {
		errs = append(errs, errors.New("setting redis-addr (HERALD_REDIS_ADDR) is required"))
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("setting redis-db must not be negative, got %d", c.DB))
	}
	files := c.tlsFiles()
	if err := files.Validate("redis-tls-cert", "redis-tls-key"); err != nil {
		errs = append(errs, err)
	}
	switch {
	case !c.TLS && !files.IsZero():
		errs = append(errs, errors.New("settings redis-tls-ca, redis-tls-cert and redis-tls-key need redis-tls"))
	case c.TLS && !files.IsZero():
		if _, err := mtls.Load(files, mtls.Options{}); err != nil {
			errs = append(errs, fmt.Errorf("settings redis-tls-ca, redis-tls-cert, redis-tls-key: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Plaintext says why the connection would not be encrypted and
// authenticated, naming the settings that fix it, or returns "" (see
// servicemain.Security).
func (c Config) Plaintext() string {
	var missing []string
	if !c.TLS {
		missing = append(missing, "redis-tls")
	}
	if c.Password == "" {
		missing = append(missing, "redis-user", "redis-password-file")
	}
	if len(missing) == 0 {
		return ""
	}
	return "Redis connection to " + c.Addr + " is not encrypted and authenticated (set " + strings.Join(missing, ", ") + ")"
}

func (c Config) tlsFiles() mtls.Files {
	return mtls.Files{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, CAFile: c.TLSCAFile}
}

// Options returns go-redis options for c: address, database, ACL user and
// password, and a dialer that does TLS with the material current at each
// new connection. The caller tunes timeouts, retries and pools on the
// result before redis.NewClient.
func (c Config) Options() (*redis.Options, error) {
	opts := &redis.Options{Addr: c.Addr, DB: c.DB, Username: c.Username, Password: c.Password}
	if !c.TLS {
		return opts, nil
	}
	src := mtls.SystemRoots()
	if files := c.tlsFiles(); !files.IsZero() {
		var err error
		if src, err = mtls.Load(files, mtls.Options{}); err != nil {
			return nil, fmt.Errorf("redis TLS (settings redis-tls-ca, redis-tls-cert, redis-tls-key): %w", err)
		}
	}
	opts.Dialer = src.Dialer(nil, "")
	return opts, nil
}

// NewClient returns a client of c with go-redis's defaults and tune
// applied (nil: none).
func NewClient(c Config, tune func(*redis.Options)) (*redis.Client, error) {
	opts, err := c.Options()
	if err != nil {
		return nil, err
	}
	if tune != nil {
		tune(opts)
	}
	return redis.NewClient(opts), nil
}

// Timeouts returns a tune function setting the dial, read and write
// timeouts to d and the retries to retries: what a service that treats
// Redis as a cache wants (fail fast, go on without it).
func Timeouts(d time.Duration, retries int) func(*redis.Options) {
	return func(o *redis.Options) {
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = d, d, d, retries
	}
}
