package notification_test

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/services/notification"
)

func TestScheduleWorkersMustLeaveAWorkerForTheFastLanes(t *testing.T) {
	valid := func() notification.Config {
		c := notification.DefaultConfig()
		c.Security = servicemain.DevelopmentInsecure()
		c.AckLinkKeyFile = "/run/secrets/herald/ack-link.key"
		c.ReferenceKey = "0123456789abcdef0123456789abcdef"
		return c
	}
	require.NoError(t, valid().Validate())

	for _, tc := range []struct {
		workers, schedule int
		wantErr           string
	}{
		{workers: 32, schedule: 0, wantErr: "setting schedule-workers must be at least 1"},
		{workers: 4, schedule: 4, wantErr: "setting schedule-workers must be less than workers"},
		{workers: 1, schedule: 4}, // one worker serves both
		{workers: 4, schedule: 3},
	} {
		c := valid()
		c.Workers, c.ScheduleWorkers = tc.workers, tc.schedule
		err := c.Validate()
		if tc.wantErr == "" {
			require.NoError(t, err, "workers %d, schedule-workers %d", tc.workers, tc.schedule)
			continue
		}
		require.ErrorContains(t, err, tc.wantErr)
	}
}

// The reference key and Notify's callback token are secrets: each is read
// from the file its -xxx-file flag names, and no flag takes a value.
func TestReferenceKeyAndCallbackTokenAreReadFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(v+"\n"), 0o600))
		return p
	}
	key := strings.Repeat("reference-key-", 3)
	c := notification.DefaultConfig()
	fs := flag.NewFlagSet("notification", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-reference-key-file", write("key", key),
		"-notify-callback-token-file", write("token", "callback-token")}))
	require.Equal(t, key, c.ReferenceKey)
	require.Equal(t, "callback-token", c.NotifyCallbackToken)
	require.Error(t, fs.Parse([]string{"-reference-key", key}), "the key's value is never a flag")
}

// TestEventKeysRequiredInProduction: a production notification service
// without its event signing key and the key set does not start (forged
// events, #20 item 7).
func TestEventKeysRequiredInProduction(t *testing.T) {
	c := notification.DefaultConfig()
	require.ErrorContains(t, c.Validate(), "events are not signed and verified (set event-signing-key-file, event-verify-keys-file)")
}
