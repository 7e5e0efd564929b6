package intake_test

import (
	"flag"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/services/intake"
)

func TestConfigValidateNamesTheSetting(t *testing.T) {
	tests := []struct {
		name string
		mod  func(c *intake.Config)
		want string
	}{
		{name: "no mllp address", mod: func(c *intake.Config) { c.MLLPAddr = "" }, want: "mllp-addr"},
		{name: "tls half set", mod: func(c *intake.Config) { c.MLLPTLS.CertFile = "x.pem" }, want: "mllp-tls-cert and mllp-tls-key"},
		{name: "tiny frames", mod: func(c *intake.Config) { c.MaxMessageBytes = 10 }, want: "max-message-bytes"},
		{name: "no tenants", mod: func(c *intake.Config) { c.Tenants = nil }, want: "tenants-file"},
		{name: "no idle timeout", mod: func(c *intake.Config) { c.MLLPIdleTimeout = 0 }, want: "mllp-idle-timeout"},
	}
	require.NoError(t, validConfig().Validate())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mod(&c)
			require.ErrorContains(t, c.Validate(), tt.want)
		})
	}
}

// validConfig is the default configuration with a trust configured.
func validConfig() intake.Config {
	c := intake.DefaultConfig()
	c.Security = servicemain.DevelopmentInsecure()
	c.Tenants = []intake.TenantSettings{{ODS: "RZZ"}}
	return c
}

// Production defaults name no trust: a deployment that forgets its tenants
// file fails at start, instead of serving the synthetic trust RZZ.
func TestDefaultConfigKnowsNoTrust(t *testing.T) {
	c := intake.DefaultConfig()
	require.Empty(t, c.Tenants)
	require.ErrorContains(t, c.Validate(), "setting tenants-file is required")
}

func TestRegisterFlags(t *testing.T) {
	c := intake.DefaultConfig()
	fs := flag.NewFlagSet("intake", flag.ContinueOnError)
	c.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-mllp-addr", "127.0.0.1:3000", "-tenants-file", "t.yaml", "-kafka-brokers", "k1:9092,k2:9092"}))
	require.Equal(t, "127.0.0.1:3000", c.MLLPAddr)
	require.Equal(t, "t.yaml", c.TenantsFile)
	require.Equal(t, []string{"k1:9092", "k2:9092"}, c.Log.Brokers)
}

func TestLoadTenants(t *testing.T) {
	ts, err := intake.LoadTenants("testdata/tenants/tenants.yaml")
	require.NoError(t, err)
	require.Len(t, ts, 2)
	require.Equal(t, "RZZ", ts[0].ODS)
	require.Equal(t, []string{"RZZ", "CRISRZZ"}, ts[0].Facilities)
	require.Equal(t, "ROUTINE", ts[0].AlertCodes["R"])

	js, err := intake.LoadTenants("testdata/tenants/tenants.json")
	require.NoError(t, err)
	require.Equal(t, []string{"CRITICAL ALERT"}, js[0].TriggerPhrases)

	_, err = intake.LoadTenants("testdata/tenants/misspelt.yaml")
	require.ErrorContains(t, err, "trigger_phrase")
	_, err = intake.LoadTenants("testdata/tenants/absent.yaml")
	require.ErrorContains(t, err, "tenants-file")
}

func TestDemoTenantsLoad(t *testing.T) {
	ts, err := intake.DemoTenants()
	require.NoError(t, err)
	var ods []string
	for _, tn := range ts {
		ods = append(ods, tn.ODS)
		require.Contains(t, tn.TriggerPhrases, "CRITICAL ALERT", tn.ODS)
	}
	require.Equal(t, []string{"RZZ", "RZY"}, ods)
	// The phrases of RZZ's demo rules (always-alert-phrases).
	require.Subset(t, ts[0].TriggerPhrases, []string{"tension pneumothorax", "pulmonary embolism", "free intraperitoneal air", "aortic dissection"})
}

// TestPatientDataKeysRequiredInProduction: a production intake without the
// trusts' patient-data keys does not start (it would write patient data to
// the log in clear), and one of the two settings alone is named.
func TestPatientDataKeysRequiredInProduction(t *testing.T) {
	c := intake.DefaultConfig()
	c.Tenants = []intake.TenantSettings{{ODS: "RZZ"}}
	require.ErrorContains(t, c.Validate(), "settings keyring-file and kek-file are required in the production profile")
	c.Keys.KeyringFile = "keyring.json"
	require.ErrorContains(t, c.Validate(), "setting kek-file is required with keyring-file")
}
