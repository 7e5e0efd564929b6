package bundle_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

func TestDemoBundlesParse(t *testing.T) {
	for _, tenant := range []string{"RZZ", "RZY"} {
		t.Run(tenant, func(t *testing.T) {
			b := mustParse(t, demoFiles(t, tenant))
			require.Equal(t, tenant, b.Tenant)
			require.NotEmpty(t, b.Version)
			require.Len(t, b.Hash, 64)
			for _, code := range bundle.StandardCodes() {
				_, ok := b.Category(code)
				require.True(t, ok, "category %s", code)
			}
			require.NotEmpty(t, b.Rules)
			require.NotEmpty(t, b.Rotas)
		})
	}
}
