package config

import (
	"flag"
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
