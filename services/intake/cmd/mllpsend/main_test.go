package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/services/intake/internal/hl7"
	"github.com/herald-health/herald/services/intake/internal/mllp"
)

// ackAll answers AA to MSH-10 "OK*" and AE otherwise: a real MLLP peer over
// TCP, standing in for intake.
type ackAll struct{}

func (ackAll) Handle(_ context.Context, msg []byte) []byte {
	m, err := hl7.Parse(msg)
	if err != nil {
		return hl7.BuildAck(hl7.SniffHeader(msg), hl7.Ack{Code: hl7.AckError, Text: "parse"})
	}
	code := hl7.AckError
	if bytes.HasPrefix([]byte(m.MSH().Field(10)), []byte("OK")) {
		code = hl7.AckAccept
	}
	return hl7.BuildAck(hl7.HeaderOf(m), hl7.Ack{Code: code, Text: "seen " + m.MSH().Field(10), Time: time.Now()})
}

func (ackAll) Oversize(context.Context, []byte, int) []byte { return nil }

func TestReplayFolderPrintsEachACK(t *testing.T) {
	srv, err := mllp.Listen("127.0.0.1:0", mllp.ServerConfig{MaxFrame: 1 << 20, IdleTimeout: 10 * time.Second, WriteTimeout: time.Second, HandleTimeout: time.Second}, ackAll{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	dir := t.TempDir()
	// LF line ends, as an editor would save them.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.hl7"), []byte("MSH|^~\\&|A|RZZ|||20260101||ORU^R01|OK1|P|2.4\nPID|1\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b.hl7"), []byte("MSH|^~\\&|A|RZZ|||20260101||ORU^R01|BAD2|P|2.4\r"), 0o600))
	var out, errOut bytes.Buffer
	code := run([]string{"-addr", srv.Addr(), dir}, &out, &errOut)
	require.Equal(t, 1, code, "an AE makes the exit status 1; stderr: %s", errOut.String())
	require.Contains(t, out.String(), "a.hl7\tAA\tseen OK1")
	require.Contains(t, out.String(), "b.hl7\tAE\tseen BAD2")

	require.Equal(t, 2, run(nil, &out, &errOut))
}
