package test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/services/acknowledgement"
	"github.com/herald-health/herald/services/console"
	"github.com/herald-health/herald/services/intake"
	"github.com/herald-health/herald/services/notification"
	"github.com/herald-health/herald/services/rules"
)

// serviceFlags returns the flag set each service's main parses: the
// service's Config flags, plus the ones every cmd/<service>/main.go adds for
// its logger and telemetry. The charts configure the binaries only through
// these flags' HERALD_ variables.
func serviceFlags(svc string) *flag.FlagSet {
	fs, _ := serviceConfig(svc)
	return fs
}

// serviceConfig is serviceFlags with the Validate of the configuration the
// flags fill.
func serviceConfig(svc string) (*flag.FlagSet, func() error) {
	fs := flag.NewFlagSet(svc, flag.ContinueOnError)
	fs.String("log-level", "info", "main: log level")
	fs.String("otlp-endpoint", "", "main: OTLP/gRPC collector")
	fs.String("metrics-addr", "", "main: Prometheus listen address")
	switch svc {
	case "intake":
		c := intake.DefaultConfig()
		c.RegisterFlags(fs)
		return fs, func() error { return c.Validate() }
	case "rules":
		c := rules.DefaultConfig()
		c.RegisterFlags(fs)
		return fs, func() error { return c.Validate() }
	case "notification":
		c := notification.DefaultConfig()
		c.RegisterFlags(fs)
		return fs, func() error { return c.Validate() }
	case "acknowledgement":
		c := acknowledgement.DefaultConfig()
		c.RegisterFlags(fs)
		return fs, func() error { return c.Validate() }
	case "console":
		c := console.DefaultConfig()
		c.RegisterFlags(fs)
		return fs, func() error { return c.Validate() }
	}
	return fs, func() error { return nil }
}

// Every HERALD_ variable a chart sets is a flag of that service, and the
// flag accepts the rendered value: a misspelt variable would be ignored
// silently by the binary, which is worse than a failed install.
func TestEnvironmentMatchesTheServicesFlags(t *testing.T) {
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			for _, d := range objectsOf[*appsv1.Deployment](s.render(t)) {
				svc := strings.TrimPrefix(d.Name, "herald-")
				fs := serviceFlags(svc)
				byEnv := map[string]*flag.Flag{}
				fs.VisitAll(func(f *flag.Flag) { byEnv[config.EnvName(f.Name)] = f })
				for _, e := range d.Spec.Template.Spec.Containers[0].Env {
					if !strings.HasPrefix(e.Name, config.Prefix) {
						continue
					}
					f, ok := byEnv[e.Name]
					if !ok {
						t.Errorf("%s sets %s, which is no flag of the %s service", d.Name, e.Name, svc)
						continue
					}
					// A secret's file exists only in the pod (the mounted
					// Secret): its flag is checked to exist, not read.
					if e.ValueFrom == nil && !strings.Contains(e.Value, "$(") && !strings.HasPrefix(e.Value, "/etc/herald/secrets/") {
						require.NoError(t, fs.Set(f.Name, e.Value), "%s: %s=%q", d.Name, e.Name, e.Value)
					}
				}
			}
		})
	}
}

// The tenants file the intake chart renders is one intake loads.
func TestIntakeLoadsTheRenderedTenantsFile(t *testing.T) {
	objs := decodeAll(t, mustRender(t, renderOpts{chart: "herald", setJSON: []string{
		`intake.tenants={"RXA":{"hl7_facilities":["RXA01"],"alert_obx":["ALERTCAT"],"alert_codes":{"C":"CRITICAL","R":"ROUTINE"},"abnormal_flags":["AA","HH"],"trigger_phrases":["tension pneumothorax"]},"RXB":{}}`,
	}}))
	cm := configMapNamed(t, objs, "herald-intake-tenants")
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cm.Data["tenants.yaml"]), 0o600))
	tenants, err := intake.LoadTenants(path)
	require.NoError(t, err)
	ods := map[string]intake.TenantSettings{}
	for _, ts := range tenants {
		ods[ts.ODS] = ts
	}
	require.Contains(t, ods, "RZZ", "the chart's default trusts stay unless removed")
	require.Contains(t, ods, "RXB")
	require.Equal(t, []string{"RXA01"}, ods["RXA"].Facilities)
	require.Equal(t, []string{"tension pneumothorax"}, ods["RXA"].TriggerPhrases)
	require.Equal(t, "CRITICAL", ods["RXA"].AlertCodes["C"])

	d := deploymentNamed(t, objs, "herald-intake")
	require.Equal(t, "/etc/herald/tenants/tenants.yaml", envOf(d.Spec.Template.Spec.Containers[0])["HERALD_TENANTS_FILE"].Value)
}

// The national values bind each sender to its trusts, and the bindings
// file the intake chart renders from them is one intake loads and applies.
func TestIntakeLoadsTheRenderedSenderBindings(t *testing.T) {
	objs := decodeAll(t, mustRender(t, renderOpts{chart: "herald", valueFiles: []string{ciValues(t, "national-values.yaml")}}))
	cm := configMapNamed(t, objs, "herald-intake-senders")
	path := filepath.Join(t.TempDir(), "senders.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cm.Data["senders.yaml"]), 0o600))
	b, err := intake.LoadSenderBindings(path)
	require.NoError(t, err)
	require.True(t, b.Allows("spiffe://north-east.example.nhs.uk/ns/ris/sa/rzz-cris", "RZZ"))
	require.False(t, b.Allows("spiffe://north-east.example.nhs.uk/ns/ris/sa/rzz-cris", "RZY"), "a trust's RIS sends for its own trust only")
	require.True(t, b.Allows("ie.north-east.example.nhs.uk", "RZY"))

	d := deploymentNamed(t, objs, "herald-intake")
	require.Equal(t, "/etc/herald/senders/senders.yaml", envOf(d.Spec.Template.Spec.Containers[0])["HERALD_SENDER_BINDINGS_FILE"].Value)
	require.Equal(t, "herald-intake-senders", volumeNamed(t, d, "senders").ConfigMap.Name)
	require.Contains(t, mountsOf(d.Spec.Template.Spec.Containers[0]), "/etc/herald/senders")

	// Without bindings nothing is rendered, and intake (production) refuses
	// to start, naming the setting.
	plain := decodeAll(t, mustRender(t, renderOpts{chart: "herald"}))
	_, set := envOf(deploymentNamed(t, plain, "herald-intake").Spec.Template.Spec.Containers[0])["HERALD_SENDER_BINDINGS_FILE"]
	require.False(t, set)
}
