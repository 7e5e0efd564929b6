package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/devca"
)

// podFiles stands in for the files a pod mounts (Secrets, certificates):
// each path the environment names gets a file of the right kind.
type podFiles struct {
	ca, cert, key, secret string
}

func newPodFiles(t *testing.T) *podFiles {
	t.Helper()
	dir := t.TempDir()
	ids, err := devca.WriteDir(dir, time.Now(), time.Hour, "service")
	require.NoError(t, err)
	secret := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(secret, []byte(strings.Repeat("s", 48)+"\n"), 0o600))
	f := ids["service"]
	return &podFiles{ca: f.CAFile, cert: f.CertFile, key: f.KeyFile, secret: secret}
}

// path maps a path in the pod to a local file of the same kind.
func (p *podFiles) path(v string) string {
	if !strings.HasPrefix(v, "/etc/herald/secrets/") && !strings.HasPrefix(v, "/etc/herald/tls/") {
		return v
	}
	switch {
	case strings.HasSuffix(v, "ca.crt"):
		return p.ca
	case strings.HasSuffix(v, "tls.crt"):
		return p.cert
	case strings.HasSuffix(v, "tls.key"):
		return p.key
	}
	return p.secret
}

// validate configures the deployment's service from its rendered
// environment, as its main would, and returns its Validate error.
func validate(t *testing.T, d *appsv1.Deployment, files *podFiles) error {
	t.Helper()
	svc := strings.TrimPrefix(d.Name, "herald-")
	fs, check := serviceConfig(svc)
	env := envOf(d.Spec.Template.Spec.Containers[0])
	require.NoError(t, config.ParseEnv(fs, nil, func(name string) (string, bool) {
		e, ok := env[name]
		if !ok || e.ValueFrom != nil {
			return "", false
		}
		return files.path(e.Value), true
	}), "%s: parse the rendered environment", d.Name)
	return check()
}

// The national values run every hop encrypted and authenticated: each
// service, configured from its rendered environment, passes its transport
// policy in the production profile (mutual TLS on gRPC, MLLP and FHIR;
// Kafka SASL_SSL as its own principal; Redis TLS as its own ACL user).
// The regional defaults, which name no certificate, would not start: the
// services refuse plaintext rather than run it.
func TestNationalValuesSecureEveryHop(t *testing.T) {
	files := newPodFiles(t)
	national := decodeAll(t, mustRender(t, renderOpts{chart: "herald", valueFiles: []string{ciValues(t, "national-values.yaml")}}))
	deployments := objectsOf[*appsv1.Deployment](national)
	require.Len(t, deployments, 4)
	for _, d := range deployments {
		if err := validate(t, d, files); err != nil {
			for _, refused := range []string{"transport not secured", "refused in the production profile", "dev-identity", "oidc-issuer", "session-key-file"} {
				require.NotContains(t, err.Error(), refused, "%s under the national values", d.Name)
			}
		}
	}
	for _, d := range objectsOf[*appsv1.Deployment](decodeAll(t, mustRender(t, renderOpts{chart: "herald"}))) {
		err := validate(t, d, files)
		require.ErrorContains(t, err, "transport not secured", "%s under the regional defaults (no certificates) must refuse to start", d.Name)
	}
}
