package acknowledgement_test

import (
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
	c.AckLinkSecret = "0123456789abcdef0123456789abcdef"
	c.DevIdentity = "link-recipient"
	c.Security = servicemain.DevelopmentInsecure()
	require.NoError(t, c.Validate())
	c.Security = servicemain.Security{Profile: servicemain.ProfileProduction}
	require.ErrorContains(t, c.Validate(), "setting dev-identity is refused in the production profile")
}
