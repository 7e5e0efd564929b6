package test

import (
	"flag"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/herald-health/herald/platform/config"
)

// consoleValues are the settings the console chart requires.
var consoleValues = []string{
	"publicURL=https://herald.rzz.example.nhs.uk", "httpTLSSecret=console-https", "grpcTLSSecret=console-grpc",
	"oidc.issuer=https://am.nhsidentity.spineservices.nhs.uk/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare",
	"oidc.clientID=herald-console", "oidc.clientSecret.existingSecret=console-oidc", "session.existingSecret=console-session",
	"ackLink.existingSecret=herald-ack-link-public",
	"patientDataKeys.keyring.existingSecret=herald-patient-keyring", "patientDataKeys.kek.existingSecret=herald-patient-kek",
}

// The console chart renders a Deployment whose every HERALD_ variable is a
// flag of the console the flag accepts, secrets as mounted files, a
// non-root read-only container, and a NetworkPolicy of its flows.
func TestConsoleChart(t *testing.T) {
	objs := decodeAll(t, mustRender(t, renderOpts{chart: "console", sets: consoleValues}))
	deps := objectsOf[*appsv1.Deployment](objs)
	require.Len(t, deps, 1)
	d := deps[0]
	c := d.Spec.Template.Spec.Containers[0]
	fs, validate := serviceConfig("console")
	byEnv := map[string]*flag.Flag{}
	fs.VisitAll(func(f *flag.Flag) { byEnv[config.EnvName(f.Name)] = f })
	for _, e := range c.Env {
		f, ok := byEnv[e.Name]
		require.True(t, ok, "%s is no flag of the console", e.Name)
		if strings.HasSuffix(e.Name, "_FILE") {
			continue // files exist only in the pod
		}
		require.NoError(t, fs.Set(f.Name, e.Value), "%s=%q", e.Name, e.Value)
	}
	// Every required setting is given (the files are the pod's): only the
	// session key, read from its file in the pod, is missing here.
	err := validate()
	require.Error(t, err)
	require.NotContains(t, err.Error(), "oidc-issuer")
	require.NotContains(t, err.Error(), "acknowledgement-addr")
	require.NotContains(t, err.Error(), "transport not secured")
	require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	require.True(t, *d.Spec.Template.Spec.SecurityContext.RunAsNonRoot)
	for _, e := range c.Env {
		require.False(t, strings.Contains(e.Name, "SECRET") && !strings.HasSuffix(e.Name, "_FILE"), "%s: a secret's value in the environment", e.Name)
	}
	pols := objectsOf[*networkingv1.NetworkPolicy](objs)
	require.Len(t, pols, 1)
	require.Len(t, pols[0].Spec.Ingress, 1)
	require.EqualValues(t, 8443, pols[0].Spec.Ingress[0].Ports[0].Port.IntValue())

	// A console without a sign-in provider, a session key or HTTPS is refused.
	for _, missing := range []string{"oidc.issuer", "session.existingSecret", "httpTLSSecret", "publicURL"} {
		var sets []string
		for _, s := range consoleValues {
			if !strings.HasPrefix(s, missing+"=") {
				sets = append(sets, s)
			}
		}
		_, err := render(t, renderOpts{chart: "console", sets: sets})
		require.Error(t, err, "rendered without %s", missing)
	}
	// Plain-HTTP public URLs are refused by the schema.
	_, err = render(t, renderOpts{chart: "console", sets: append(append([]string{}, consoleValues...), "publicURL=http://herald.example")})
	require.Error(t, err)
}

// With a reporting store the console chart gives the PostgreSQL URL and the
// Kafka password as files, Kafka over TLS + SCRAM (accepted by the
// console's production transport check), and egress to PostgreSQL and
// Kafka; the brokers, the password and the egress peers are required.
func TestConsoleChartReporting(t *testing.T) {
	reporting := append(append([]string{}, consoleValues...),
		"reporting.postgresURL.existingSecret=console-postgres", "reporting.kafka.brokers[0]=kafka-0.kafka:9093",
		"reporting.kafka.caSecret=kafka-ca", "reporting.kafka.saslPassword.existingSecret=console-kafka",
		"reporting.egress.postgres.peers[0].ipBlock.cidr=10.20.0.0/16", "reporting.egress.kafka.peers[0].ipBlock.cidr=10.30.0.0/16")
	objs := decodeAll(t, mustRender(t, renderOpts{chart: "console", sets: reporting}))
	c := objectsOf[*appsv1.Deployment](objs)[0].Spec.Template.Spec.Containers[0]
	fs, validate := serviceConfig("console")
	byEnv := map[string]*flag.Flag{}
	fs.VisitAll(func(f *flag.Flag) { byEnv[config.EnvName(f.Name)] = f })
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		f, ok := byEnv[e.Name]
		require.True(t, ok, "%s is no flag of the console", e.Name)
		if !strings.HasSuffix(e.Name, "_FILE") {
			require.NoError(t, fs.Set(f.Name, e.Value), "%s=%q", e.Name, e.Value)
		}
	}
	require.Equal(t, "/etc/herald/secrets/postgres/url", env["HERALD_POSTGRES_URL_FILE"])
	require.Equal(t, "/etc/herald/secrets/kafka/password", env["HERALD_KAFKA_SASL_PASSWORD_FILE"])
	require.NotContains(t, env, "HERALD_POSTGRES_URL")
	// The pod's files are absent here; the Kafka hop must still pass the
	// production transport check, so a URL stands in for the file.
	require.NoError(t, fs.Set("postgres-url", "postgres://console@db:5432/herald"))
	err := validate()
	require.Error(t, err) // the session key, Kafka CA and password are the pod's files
	require.NotContains(t, err.Error(), "transport not secured")
	require.NotContains(t, err.Error(), "kafka-brokers")
	pol := objectsOf[*networkingv1.NetworkPolicy](objs)[0]
	ports := map[int]bool{}
	for _, e := range pol.Spec.Egress {
		for _, p := range e.Ports {
			ports[p.Port.IntValue()] = true
		}
	}
	require.True(t, ports[5432] && ports[9093], "egress ports %v lack PostgreSQL or Kafka", ports)

	for _, missing := range []string{"reporting.kafka.brokers", "reporting.kafka.saslPassword.existingSecret", "reporting.egress.kafka.peers"} {
		var sets []string
		for _, s := range reporting {
			if !strings.HasPrefix(s, missing) {
				sets = append(sets, s)
			}
		}
		_, err := render(t, renderOpts{chart: "console", sets: sets})
		require.Error(t, err, "rendered without %s", missing)
	}
}
