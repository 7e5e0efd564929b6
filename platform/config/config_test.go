package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCommandLineBeatsEnvironmentBeatsDefault(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	brokers := StringList{"default:9092"}
	fs.Var(&brokers, "kafka-brokers", "")
	addr := fs.String("grpc-addr", "127.0.0.1:0", "")
	timeout := fs.Duration("timeout", time.Second, "")
	env := map[string]string{
		"HERALD_KAFKA_BROKERS": "a:1, b:2",
		"HERALD_GRPC_ADDR":     "env:1",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	if err := ParseEnv(fs, []string{"-grpc-addr", "flag:1"}, lookup); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(brokers, ","); got != "a:1,b:2" {
		t.Errorf("brokers: got %q, want from environment", got)
	}
	if *addr != "flag:1" {
		t.Errorf("grpc-addr: got %q, want the command line's", *addr)
	}
	if *timeout != time.Second {
		t.Errorf("timeout: got %v, want the default", *timeout)
	}
}

func TestBadEnvironmentValueNamesTheVariable(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Duration("step-timeout", time.Second, "")
	err := ParseEnv(fs, nil, func(k string) (string, bool) { return "soon", k == "HERALD_STEP_TIMEOUT" })
	if err == nil || !strings.Contains(err.Error(), "HERALD_STEP_TIMEOUT") {
		t.Fatalf("error: got %v, want one naming HERALD_STEP_TIMEOUT", err)
	}
}

func TestRequiredAndPositiveNameTheSetting(t *testing.T) {
	if err := Required("redis-addr", " "); err == nil || !strings.Contains(err.Error(), "HERALD_REDIS_ADDR") {
		t.Fatalf("Required: got %v", err)
	}
	if err := Positive("lease", 0); err == nil || !strings.Contains(err.Error(), "lease") {
		t.Fatalf("Positive: got %v", err)
	}
	if Required("x", "v") != nil || Positive("y", time.Second) != nil {
		t.Fatal("valid values rejected")
	}
}

func TestSecretFileReadsTheFileNeverTheValue(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "password")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var secret string
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	SecretFile(fs, &secret, "redis-password", "Redis password")
	env := map[string]string{"HERALD_REDIS_PASSWORD_FILE": path, "HERALD_REDIS_PASSWORD": "from-env"}
	if err := ParseEnv(fs, nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if secret != "s3cret" {
		t.Fatalf("secret: got %q, want the file's content without the line break", secret)
	}
	if got := fs.Lookup("redis-password-file").Value.String(); got != path {
		t.Fatalf("flag value prints %q, want the path", got)
	}
	if fs.Lookup("redis-password") != nil {
		t.Fatal("an inline secret flag exists")
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{filepath.Join(dir, "missing"), empty} {
		fs := flag.NewFlagSet("probe", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		SecretFile(fs, &secret, "redis-password", "Redis password")
		if err := fs.Parse([]string{"-redis-password-file=" + bad}); err == nil || !strings.Contains(err.Error(), "redis-password-file") {
			t.Fatalf("secret file %s: got %v, want an error naming the flag", bad, err)
		}
	}
}
