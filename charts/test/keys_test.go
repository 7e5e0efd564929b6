package test

import (
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func envValues(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		out[e.Name] = e.Value
	}
	return out
}

// TestPatientDataKeysAreMountedInIntakeAndTheConsoleOnly: with the
// patient-data key Secrets named, intake and the console read the keyring
// and the key-encryption key from mounted Secret files (a destruction
// reaches them without a restart); acknowledgement, notification and rules
// get neither (they cannot read patient data); one Secret without the other
// is refused at render time.
func TestPatientDataKeysAreMountedInIntakeAndTheConsoleOnly(t *testing.T) {
	keys := []string{"patientDataKeys.keyring.existingSecret=herald-patient-keyring", "patientDataKeys.kek.existingSecret=herald-patient-kek"}

	d := objectsOf[*appsv1.Deployment](decodeAll(t, mustRender(t, renderOpts{chart: "intake", sets: keys})))[0]
	env := envValues(d.Spec.Template.Spec.Containers[0])
	require.Equal(t, "/etc/herald/secrets/herald-patient-keyring/keyring.json", env["HERALD_KEYRING_FILE"])
	require.Equal(t, "/etc/herald/secrets/herald-patient-kek/kek", env["HERALD_KEK_FILE"])
	mounted := map[string]bool{}
	for _, src := range volumeNamed(t, d, "secrets").Projected.Sources {
		if src.Secret != nil {
			mounted[src.Secret.Name] = true
		}
	}
	require.True(t, mounted["herald-patient-keyring"] && mounted["herald-patient-kek"], "intake's secrets volume mounts %v", mounted)

	c := objectsOf[*appsv1.Deployment](decodeAll(t, mustRender(t, renderOpts{chart: "console", sets: append(append([]string(nil), consoleValues...), keys...)})))[0]
	env = envValues(c.Spec.Template.Spec.Containers[0])
	require.Equal(t, "/etc/herald/secrets/keyring/keyring.json", env["HERALD_KEYRING_FILE"])
	require.Equal(t, "/etc/herald/secrets/kek/kek", env["HERALD_KEK_FILE"])
	require.Equal(t, "herald-patient-keyring", volumeNamed(t, c, "keyring").Secret.SecretName)
	require.Equal(t, "herald-patient-kek", volumeNamed(t, c, "kek").Secret.SecretName)

	for _, svc := range []string{"acknowledgement", "notification", "rules"} {
		d := objectsOf[*appsv1.Deployment](decodeAll(t, mustRender(t, renderOpts{chart: svc})))[0]
		env := envValues(d.Spec.Template.Spec.Containers[0])
		require.NotContains(t, env, "HERALD_KEYRING_FILE", "%s holds patient-data keys", svc)
		require.NotContains(t, env, "HERALD_KEK_FILE", "%s holds patient-data keys", svc)
	}

	_, err := render(t, renderOpts{chart: "intake", sets: keys[:1]})
	require.ErrorContains(t, err, "set both keyring.existingSecret and kek.existingSecret")
}
