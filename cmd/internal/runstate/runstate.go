// Package runstate is the small file through which `make run` tells
// heraldctl where it listens. The embedded broker and Redis take free ports
// at every start, so no fixed default can find them; the all-in-one writes
// this file when everything is up and removes it when it stops, and
// heraldctl reads it for the addresses it is not given.
package runstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// FileName is the state file's name in the all-in-one's work directory.
const FileName = "run.json"

// State is where a running all-in-one listens.
type State struct {
	KafkaBrokers     []string `json:"kafka_brokers"`
	RedisAddr        string   `json:"redis_addr"`
	IntakeGRPC       string   `json:"intake_grpc"`
	FHIRURL          string   `json:"fhir_url"`
	MLLP             string   `json:"mllp"`
	RulesGRPC        string   `json:"rules_grpc"`
	AckGRPC          string   `json:"acknowledgement_grpc"`
	NotificationGRPC string   `json:"notification_grpc"`
	Dashboard        string   `json:"dashboard"`
	// TLSCert, TLSKey and TLSCA are the development identity heraldctl
	// presents and the CA that verifies the services (empty: plaintext,
	// make run -insecure).
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
	TLSCA   string `json:"tls_ca,omitempty"`
	// OIDCIssuer is the development identity provider heraldctl login
	// signs in with (empty: none started).
	OIDCIssuer string `json:"oidc_issuer,omitempty"`
	// PostgresURL is the console's reporting store (empty: reporting off).
	PostgresURL string `json:"postgres_url,omitempty"`
	// PID is the all-in-one's process id, to tell a stale file (left by a
	// killed run) from a live one.
	PID int `json:"pid"`
}

// DefaultPath is where heraldctl looks when HERALD_CTL_STATE is unset: the
// file in the all-in-one's default work directory.
func DefaultPath() string {
	return filepath.Join(os.TempDir(), "herald-run", FileName)
}

// Write replaces the file at path with s atomically (a reader never sees
// half a file).
func Write(path string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode run state: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write run state %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write run state %s: %w", path, err)
	}
	return nil
}

// Read returns the state at path; ok is false when there is no file.
func Read(path string) (s State, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("read run state %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, false, fmt.Errorf("read run state %s: %w", path, err)
	}
	return s, true, nil
}

// Running reports whether the process that wrote the state still runs (a
// run killed with SIGKILL leaves its file behind).
func (s State) Running() bool {
	if s.PID <= 0 {
		return false
	}
	p, err := os.FindProcess(s.PID)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}
