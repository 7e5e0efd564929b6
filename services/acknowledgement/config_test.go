package acknowledgement_test

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/services/acknowledgement"
)

// A development identity (acknowledge links with no login) is refused in
// the production profile, whatever else is set: only a development system
// may run without OIDC.
func TestDevIdentityIsRefusedInProduction(t *testing.T) {
	c := acknowledgement.DefaultConfig()
	c.AckLinkPublicKeys = "/run/secrets/herald/ack-link.pub"
	c.ReferenceKey = "0123456789abcdef0123456789abcdef"
	c.DevIdentity = "link-recipient"
	c.Security = servicemain.DevelopmentInsecure()
	require.NoError(t, c.Validate())
	c.Security = servicemain.Security{Profile: servicemain.ProfileProduction}
	require.ErrorContains(t, c.Validate(), "setting dev-identity is refused in the production profile")
}

// The reference key is a secret: it is read from the file
// -reference-key-file names, and there is no flag that takes its value.
func TestReferenceKeyIsReadFromAFile(t *testing.T) {
	key := strings.Repeat("reference-key-", 3)
	path := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(path, []byte(key+"\n"), 0o600))
	c := acknowledgement.DefaultConfig()
	fs := flag.NewFlagSet("acknowledgement", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-reference-key-file", path}))
	require.Equal(t, key, c.ReferenceKey)
	require.Error(t, fs.Parse([]string{"-reference-key", key}), "the key's value is never a flag")
}

// TestEventKeysRequiredInProduction: a production acknowledgement service
// without its event signing key and the key set does not start (forged
// events, #20 item 7).
func TestEventKeysRequiredInProduction(t *testing.T) {
	c := acknowledgement.DefaultConfig()
	require.ErrorContains(t, c.Validate(), "events are not signed and verified (set event-signing-key-file, event-verify-keys-file)")
}

// TestAuditOffIsRefusedInProduction: the switch that runs acknowledgement
// without its audit trail (for measuring its cost) is refused in the
// production profile.
func TestAuditOffIsRefusedInProduction(t *testing.T) {
	c := acknowledgement.DefaultConfig()
	c.AckLinkPublicKeys = "/run/secrets/herald/ack-link.pub"
	c.ReferenceKey = "0123456789abcdef0123456789abcdef"
	c.AuditOff = true
	c.DevIdentity = "link-recipient"
	c.Security = servicemain.DevelopmentInsecure()
	require.NoError(t, c.Validate())
	c.Security = servicemain.Security{Profile: servicemain.ProfileProduction}
	require.ErrorContains(t, c.Validate(), "setting audit-off is refused in the production profile")
}
