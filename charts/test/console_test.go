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
