package redisconn_test

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/redisconn"
	"github.com/herald-health/herald/platform/testinfra"
)

// secure returns the settings of user on the test Redis that takes only
// TLS and ACL users.
func secure(t *testing.T, user string) redisconn.Config {
	t.Helper()
	c := testinfra.RedisTLS(t, user)
	return redisconn.Config{Addr: c.Addrs[0], Username: c.User, Password: c.Password, TLS: true, TLSCAFile: c.CAFile}
}

// ping connects with cfg and runs one command.
func ping(t *testing.T, cfg redisconn.Config) error {
	t.Helper()
	rdb, err := redisconn.NewClient(cfg, redisconn.Timeouts(5*time.Second, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

func TestServiceUserOverTLS(t *testing.T) {
	cfg := secure(t, testinfra.PrincipalIntake)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if why := cfg.Plaintext(); why != "" {
		t.Fatalf("Plaintext: got %q, want none", why)
	}
	rdb, err := redisconn.NewClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	key := "herald:intake:outcome:" + testinfra.UniqueName("msg")
	if err := rdb.Set(ctx, key, "accepted", time.Minute).Err(); err != nil {
		t.Fatalf("SET own key as %s over TLS: %v", cfg.Username, err)
	}
	if got, err := rdb.Get(ctx, key).Result(); err != nil || got != "accepted" {
		t.Fatalf("GET own key: got %q, %v", got, err)
	}
	// The service's user reaches only its own keys.
	err = rdb.Get(ctx, "herald:notification:alert:{a1}").Err()
	if err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("GET another service's key as %s: got %v, want NOPERM", cfg.Username, err)
	}
	if err := rdb.FlushDB(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("FLUSHDB as %s: got %v, want NOPERM", cfg.Username, err)
	}
}

func TestRedisRefusesWhoIsNotAuthenticated(t *testing.T) {
	good := secure(t, testinfra.PrincipalIntake)
	noPassword, wrongPassword, plaintext := good, good, good
	noPassword.Username, noPassword.Password = "", ""
	wrongPassword.Password = "not-" + good.Password
	plaintext.TLS, plaintext.TLSCAFile = false, ""
	for name, c := range map[string]struct {
		cfg  redisconn.Config
		want string
	}{
		"no password":    {noPassword, "NOAUTH"},
		"wrong password": {wrongPassword, "WRONGPASS"},
		"plaintext":      {plaintext, ""},
	} {
		t.Run(name, func(t *testing.T) {
			err := ping(t, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("PING: got %v, want a refusal mentioning %q", err, c.want)
			}
		})
	}
	if err := ping(t, good); err != nil {
		t.Fatalf("PING with the password: %v", err)
	}
}

func TestServerCertificateIsVerified(t *testing.T) {
	dir := t.TempDir()
	files, err := devca.WriteDir(dir, time.Now(), time.Hour, "redis", "intake")
	if err != nil {
		t.Fatal(err)
	}
	cfg := secure(t, testinfra.PrincipalIntake)
	cfg.TLSCAFile = files["intake"].CAFile // another CA than the one that signed the server
	if err := ping(t, cfg); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("PING a server whose certificate another CA signed: got %v, want a certificate error", err)
	}
	// A client certificate of the right CA is accepted; one of another CA is
	// refused by the server.
	c := testinfra.RedisTLS(t, testinfra.PrincipalIntake)
	withCert := secure(t, testinfra.PrincipalIntake)
	withCert.TLSCertFile, withCert.TLSKeyFile = c.CertFile, c.KeyFile
	if err := ping(t, withCert); err != nil {
		t.Fatalf("PING with a client certificate of the CA: %v", err)
	}
	foreign := withCert
	foreign.TLSCertFile, foreign.TLSKeyFile = files["intake"].CertFile, files["intake"].KeyFile
	if err := ping(t, foreign); err == nil {
		t.Fatal("PING with a client certificate of another CA succeeded")
	}
}

func TestFlagsReadThePasswordFromAFile(t *testing.T) {
	c := testinfra.RedisTLS(t, testinfra.PrincipalIntake)
	var cfg redisconn.Config
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	env := map[string]string{
		"HERALD_REDIS_ADDR":          c.Addrs[0],
		"HERALD_REDIS_USER":          c.User,
		"HERALD_REDIS_PASSWORD_FILE": c.PasswordFile,
		"HERALD_REDIS_TLS":           "true",
		"HERALD_REDIS_TLS_CA":        c.CAFile,
	}
	if err := config.ParseEnv(fs, nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := ping(t, cfg); err != nil {
		t.Fatalf("PING with settings from the environment: %v", err)
	}
}

func TestValidateNamesTheSetting(t *testing.T) {
	cases := []struct {
		cfg  redisconn.Config
		want string
	}{
		{redisconn.Config{}, "redis-addr"},
		{redisconn.Config{Addr: "r:6379", TLSCAFile: "ca.crt"}, "need redis-tls"},
		{redisconn.Config{Addr: "r:6379", TLS: true, TLSCertFile: "c.crt"}, "redis-tls-key"},
		{redisconn.Config{Addr: "r:6379", TLS: true, TLSCAFile: "/nonexistent/ca.crt"}, "redis-tls-ca"},
	}
	for _, c := range cases {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("Validate(%+v): got %v, want an error mentioning %q", c.cfg, err, c.want)
		}
	}
	if why := (redisconn.Config{Addr: "r:6379"}).Plaintext(); !strings.Contains(why, "redis-tls") || !strings.Contains(why, "redis-password-file") {
		t.Fatalf("Plaintext of a bare config: got %q", why)
	}
}
