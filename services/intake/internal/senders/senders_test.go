package senders_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/services/intake/internal/senders"
)

func TestBindingsAllowOnlyTheirTrusts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "senders.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
senders:
  - identity: spiffe://nhs.example/ns/ris/sa/north
    trusts: [rzz]
  - identity: ie.region.example.nhs.uk
    trusts: [RZZ, RZY]
  - identity: national-ie
    trusts: ["*"]
`), 0o600))
	b, err := senders.Load(path)
	require.NoError(t, err)
	require.Equal(t, 3, b.Len())
	for _, tc := range []struct {
		identity, trust string
		want            bool
	}{
		{"spiffe://nhs.example/ns/ris/sa/north", "RZZ", true},
		{"spiffe://nhs.example/ns/ris/sa/north", "RZY", false},
		{"ie.region.example.nhs.uk", "rzy", true},
		{"ie.region.example.nhs.uk", "RXX", false},
		{"national-ie", "RXX", true},
		{"someone-else", "RZZ", false},
		{"", "RZZ", false},
	} {
		require.Equal(t, tc.want, b.Allows(tc.identity, tc.trust), "%s for %s", tc.identity, tc.trust)
	}
	var none *senders.Bindings
	require.False(t, none.Allows("national-ie", "RZZ"), "no bindings bind nobody")
}

func TestBindingsFileErrorsNameTheEntry(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"senders: []", "no senders"},
		{"senders: [{identity: a, trusts: []}]", "senders[0].trusts is empty"},
		{"senders: [{identity: '', trusts: [RZZ]}]", "senders[0].identity is empty"},
		{"senders: [{identity: a, trusts: [RZZ]}, {identity: a, trusts: [RZY]}]", "senders[1].identity a is bound twice"},
		{"senders: [{identity: a, trusts: ['*', RZZ]}]", "must stand alone"},
		{"senders: [{identity: a, trust: [RZZ]}]", "field trust not found"},
	} {
		path := filepath.Join(t.TempDir(), "senders.yaml")
		require.NoError(t, os.WriteFile(path, []byte(tc.doc), 0o600))
		_, err := senders.Load(path)
		require.ErrorContains(t, err, tc.want, tc.doc)
	}
}
