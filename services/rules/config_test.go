package rules_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/services/rules"
)

func TestConfigValidateNamesTheSetting(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	cases := []struct {
		name string
		edit func(c *rules.Config)
		want string
	}{
		{"no bundles", func(c *rules.Config) { c.BundleFS = nil }, "setting bundle-dir (HERALD_BUNDLE_DIR) is required"},
		{"bundle dir is a file", func(c *rules.Config) { c.BundleDir = file }, "setting bundle-dir: "},
		{"poll", func(c *rules.Config) { c.BundlePoll = 0 }, "setting bundle-poll-interval must be positive"},
		{"group", func(c *rules.Config) { c.GroupID = "" }, "setting group-id is required"},
		{"grpc", func(c *rules.Config) { c.GRPC.Addr = "" }, "setting grpc-addr is required"},
		{"kafka", func(c *rules.Config) { c.Log.Brokers = nil }, "setting kafka-brokers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rules.DefaultConfig()
			c.Security = servicemain.DevelopmentInsecure()
			c.BundleFS = rules.DemoBundles()
			require.NoError(t, c.Validate())
			tc.edit(&c)
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
}

func TestFlagsBindTheConfig(t *testing.T) {
	c := rules.DefaultConfig()
	fs := flag.NewFlagSet("rules", flag.ContinueOnError)
	c.RegisterFlags(fs)
	dir := t.TempDir()
	require.NoError(t, fs.Parse([]string{"-bundle-dir", dir, "-bundle-poll-interval", "250ms", "-grpc-addr", "127.0.0.1:0", "-group-id", "g",
		"-profile", "development", "-insecure"}))
	require.Equal(t, dir, c.BundleDir)
	require.Equal(t, 250*time.Millisecond, c.BundlePoll)
	require.Equal(t, "g", c.GroupID)
	require.NoError(t, c.Validate())
}

// The default profile is production: plaintext hops are refused with the
// settings that fix them, and -insecure is refused outright.
func TestProductionRefusesPlaintext(t *testing.T) {
	c := rules.DefaultConfig()
	c.BundleFS = rules.DemoBundles()
	err := c.Validate()
	require.ErrorContains(t, err, "grpc-tls-cert")
	require.ErrorContains(t, err, "kafka-sasl-user")
	// Forged events (#20 item 7): no event keys, no start.
	require.ErrorContains(t, err, "events are not signed and verified (set event-signing-key-file, event-verify-keys-file)")
	c.Security.Insecure = true
	require.ErrorContains(t, c.Validate(), "refused in the production profile")
}
