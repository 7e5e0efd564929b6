package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Each service chart installs on its own with its default values.
func TestServiceChartsStandalone(t *testing.T) {
	for _, svc := range services {
		t.Run(svc, func(t *testing.T) {
			objs := decodeAll(t, mustRender(t, renderOpts{chart: svc}))
			ds := objectsOf[*appsv1.Deployment](objs)
			require.Len(t, ds, 1)
			require.Equal(t, "herald-"+svc, ds[0].Name)
			checkDeployment(t, svc, ds[0], scenario{otel: true, partitions: 12})
			require.Len(t, objectsOf[*networkingv1.NetworkPolicy](objs), 1)
			require.Empty(t, objectsOf[*corev1.Secret](objs))
		})
	}
}

func deploymentNamed(t *testing.T, objs []object, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range objectsOf[*appsv1.Deployment](objs) {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func configMapNamed(t *testing.T, objs []object, name string) *corev1.ConfigMap {
	t.Helper()
	for _, c := range objectsOf[*corev1.ConfigMap](objs) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no ConfigMap %s", name)
	return nil
}

func volumeNamed(t *testing.T, d *appsv1.Deployment, name string) corev1.Volume {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("%s has no volume %s", d.Name, name)
	return corev1.Volume{}
}

// The rules service reads <bundle dir>/<ODS>/<file>: each trust's bundle
// becomes a ConfigMap projected under its ODS code, and a changed bundle
// rolls the pods.
func TestRulesPolicyBundlesFromConfigMaps(t *testing.T) {
	demo := filepath.Join("..", "..", "services", "rules", "bundles", "demo")
	rzz, err := os.ReadDir(filepath.Join(demo, "RZZ"))
	require.NoError(t, err)
	var sets []string
	var files []string
	for _, f := range rzz {
		files = append(files, f.Name())
		sets = append(sets, "rules.bundles.RZZ."+strings.ReplaceAll(f.Name(), ".", `\.`)+"="+filepath.Join(demo, "RZZ", f.Name()))
	}
	render := func(extra ...string) []object {
		t.Helper()
		o := renderOpts{chart: "herald", setJSON: []string{`rules.bundleConfigMaps=[{"tenant":"RZY","name":"rzy-policy","files":["bundle.yaml"]}]`}}
		o.setFile = append(sets, extra...)
		return decodeAll(t, mustRender(t, o))
	}
	objs := render()
	cm := configMapNamed(t, objs, "herald-rules-bundle-rzz")
	require.Equal(t, "RZZ", cm.Labels["herald.nhs.uk/tenant"])
	for _, f := range files {
		want, err := os.ReadFile(filepath.Join(demo, "RZZ", f))
		require.NoError(t, err)
		require.Equal(t, strings.TrimRight(string(want), "\n"), strings.TrimRight(cm.Data[f], "\n"), "ConfigMap key %s", f)
	}
	d := deploymentNamed(t, objs, "herald-rules")
	env := envOf(d.Spec.Template.Spec.Containers[0])
	require.Equal(t, "/etc/herald/bundles", env["HERALD_BUNDLE_DIR"].Value)
	v := volumeNamed(t, d, "bundles")
	require.NotNil(t, v.Projected)
	paths := map[string]string{}
	for _, src := range v.Projected.Sources {
		require.NotNil(t, src.ConfigMap)
		for _, it := range src.ConfigMap.Items {
			paths[it.Path] = src.ConfigMap.Name + ":" + it.Key
		}
	}
	for _, f := range files {
		require.Equal(t, "herald-rules-bundle-rzz:"+f, paths["RZZ/"+f])
	}
	require.Equal(t, "rzy-policy:bundle.yaml", paths["RZY/bundle.yaml"])
	var mounted bool
	for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.Name == "bundles" {
			mounted = true
			require.Equal(t, "/etc/herald/bundles", m.MountPath)
			require.Empty(t, m.SubPath, "a subPath mount would never see an updated bundle")
		}
	}
	require.True(t, mounted)

	before := d.Spec.Template.Annotations["checksum/bundles"]
	require.NotEmpty(t, before)
	changed := deploymentNamed(t, render("rules.bundles.RZZ.extra\\.yaml="+filepath.Join(demo, "README.md")), "herald-rules")
	require.NotEqual(t, before, changed.Spec.Template.Annotations["checksum/bundles"], "a changed bundle rolls the pods")
}

// Per-trust settings: intake's extraction settings and notification's
// template overrides reach the files the services read.
func TestPerTenantSettings(t *testing.T) {
	objs := decodeAll(t, mustRender(t, renderOpts{chart: "herald", setJSON: []string{
		`intake.tenants={"RZZ":{"hl7_facilities":["RZZ01","RZZRIS"],"abnormal_flags":["AA"],"trigger_phrases":["tension pneumothorax"]}}`,
		`notification.templates={"RZZ":{"email":{"critical.tmpl":"Critical result {{ .Ref }}: {{ .AckLink }}"},"sms":{"default.tmpl":"Herald alert {{ .Ref }}"}}}`,
	}}))
	tenants := configMapNamed(t, objs, "herald-intake-tenants")
	require.Contains(t, tenants.Data["tenants.yaml"], "ods: RZZ")
	require.Contains(t, tenants.Data["tenants.yaml"], "- RZZRIS")
	intake := deploymentNamed(t, objs, "herald-intake")
	require.Equal(t, "herald-intake-tenants", volumeNamed(t, intake, "tenants").ConfigMap.Name)

	tpl := configMapNamed(t, objs, "herald-notification-templates")
	require.Equal(t, "Critical result {{ .Ref }}: {{ .AckLink }}\n", tpl.Data["RZZ.email.critical.tmpl"])
	notification := deploymentNamed(t, objs, "herald-notification")
	items := map[string]string{}
	for _, it := range volumeNamed(t, notification, "templates").ConfigMap.Items {
		items[it.Key] = it.Path
	}
	require.Equal(t, map[string]string{"RZZ.email.critical.tmpl": "RZZ/email/critical.tmpl", "RZZ.sms.default.tmpl": "RZZ/sms/default.tmpl"}, items)
	env := envOf(notification.Spec.Template.Spec.Containers[0])
	require.Equal(t, "herald-rules:9090", env["HERALD_RULES_ADDR"].Value)
	require.Equal(t, "https://herald.network.example.nhs.uk", env["HERALD_ACK_BASE_URL"].Value)
}

// Every credential is a reference to a Secret the platform team creates:
// SMTP, SMS (Notify API key), webhook signing, OIDC client secret and
// session key, the ack-link signing key (notification's alone) and public
// keys, Redis password and TLS.
func TestSecretReferences(t *testing.T) {
	objs := decodeAll(t, mustRender(t, renderOpts{chart: "herald", valueFiles: []string{ciValues(t, "national-values.yaml")},
		sets: []string{"rules.tls.existingSecret=herald-rules-grpc-tls", "rules.tls.clientCA=true", "rules.probes.port=9091",
			"global.redis.existingSecret=herald-redis", "intake.enabled=false",
			"global.reference.existingSecret=herald-reference", "notification.sms.callbackTokenKey=callback-token"}}))
	refs := map[string]string{}
	for _, d := range objectsOf[*appsv1.Deployment](objs) {
		c := d.Spec.Template.Spec.Containers[0]
		checkSecretsAreReferences(t, d.Name, c.Env)
		svc := strings.TrimPrefix(d.Name, "herald-")
		// Every secret file the service reads is a key the "secrets"
		// volume projects, mounted where the variable says.
		projected := map[string]bool{}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == "secrets" && v.Projected != nil {
				for _, src := range v.Projected.Sources {
					for _, it := range src.Secret.Items {
						projected["/etc/herald/secrets/"+it.Path] = src.Secret.Name+"/"+it.Key == it.Path
					}
				}
			}
		}
		for _, e := range c.Env {
			switch {
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				refs[svc+" "+e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			case strings.HasPrefix(e.Value, "/etc/herald/secrets/"):
				require.True(t, projected[e.Value], "%s: %s=%s is not a key of its secrets volume", d.Name, e.Name, e.Value)
				refs[svc+" "+e.Name] = strings.TrimPrefix(e.Value, "/etc/herald/secrets/")
			}
		}
		if len(projected) > 0 {
			require.Contains(t, mountsOf(c), "/etc/herald/secrets", "%s mounts its secrets", d.Name)
		}
	}
	for k, v := range map[string]string{
		"notification HERALD_SMTP_USER":            "herald-smtp/user",
		"notification HERALD_SMTP_PASSWORD_FILE":   "herald-smtp/password",
		"notification HERALD_NOTIFY_API_KEY_FILE":  "herald-notify/api-key",
		"notification HERALD_WEBHOOK_SECRET_FILE":  "herald-webhook/secret",
		"notification HERALD_RECEIPTS_SECRET_FILE": "herald-receipts/secret",
		// Notification holds the private link key, acknowledgement the
		// public keys only.
		"notification HERALD_ACK_LINK_KEY_FILE":            "herald-ack-link-signing/key.pem",
		"acknowledgement HERALD_ACK_LINK_PUBLIC_KEYS_FILE": "herald-ack-link-public/keys.pem",
		"acknowledgement HERALD_SESSION_KEY_FILE":          "herald-oidc/session-key",
		"acknowledgement HERALD_OIDC_CLIENT_SECRET_FILE":   "herald-oidc/client-secret",
		// One alert-reference key for both services; Notify's callback token
		// beside its API key.
		"notification HERALD_REFERENCE_KEY_FILE":         "herald-reference/key",
		"acknowledgement HERALD_REFERENCE_KEY_FILE":      "herald-reference/key",
		"notification HERALD_NOTIFY_CALLBACK_TOKEN_FILE": "herald-notify/callback-token",
		// The national values give each service its own Redis ACL user and
		// Kafka principal, the password under the principal's name.
		"notification HERALD_REDIS_PASSWORD_FILE":         "herald-redis/herald-notification",
		"acknowledgement HERALD_REDIS_PASSWORD_FILE":      "herald-redis/herald-acknowledgement",
		"notification HERALD_KAFKA_SASL_PASSWORD_FILE":    "herald-kafka-users/herald-notification",
		"acknowledgement HERALD_KAFKA_SASL_PASSWORD_FILE": "herald-kafka-users/herald-acknowledgement",
		"rules HERALD_KAFKA_SASL_PASSWORD_FILE":           "herald-kafka-users/herald-rules",
		"acknowledgement HERALD_KAFKA_TLS_CA":             "herald-kafka-ca/ca.crt",
		"acknowledgement HERALD_REDIS_TLS_CA":             "herald-redis-ca/ca.crt",
		// Forged events: each service its own signing key, every one the
		// key set.
		"notification HERALD_EVENT_SIGNING_KEY_FILE":    "herald-event-signing/notification.pem",
		"acknowledgement HERALD_EVENT_SIGNING_KEY_FILE": "herald-event-signing/acknowledgement.pem",
		"rules HERALD_EVENT_SIGNING_KEY_FILE":           "herald-event-signing/rules.pem",
		"notification HERALD_EVENT_VERIFY_KEYS_FILE":    "herald-event-keys/event-keys.yaml",
		"acknowledgement HERALD_EVENT_VERIFY_KEYS_FILE": "herald-event-keys/event-keys.yaml",
		"rules HERALD_EVENT_VERIFY_KEYS_FILE":           "herald-event-keys/event-keys.yaml",
	} {
		require.Equal(t, v, refs[k], "Secret reference of %s", k)
	}
	for _, name := range []string{"herald-acknowledgement", "herald-intake", "herald-rules"} {
		_, holds := refs[strings.TrimPrefix(name, "herald-")+" HERALD_ACK_LINK_KEY_FILE"]
		require.False(t, holds, "%s never mounts the acknowledge-link signing key", name)
	}
	// A service's pods hold its own event signing key and no other: the
	// projected volume carries the one key of the Secret.
	for _, d := range objectsOf[*appsv1.Deployment](objs) {
		svc := strings.TrimPrefix(d.Name, "herald-")
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != "secrets" || v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				if src.Secret.Name != "herald-event-signing" {
					continue
				}
				for _, it := range src.Secret.Items {
					require.Equal(t, svc+".pem", it.Key, "%s mounts another service's event signing key", d.Name)
				}
			}
		}
	}
	rules := deploymentNamed(t, objs, "herald-rules")
	require.Equal(t, "herald-rules-grpc-tls", volumeNamed(t, rules, "tls").Secret.SecretName)
	env := envOf(rules.Spec.Template.Spec.Containers[0])
	require.Equal(t, "/etc/herald/tls/tls.crt", env["HERALD_GRPC_TLS_CERT"].Value)
	require.Equal(t, "/etc/herald/tls/tls.key", env["HERALD_GRPC_TLS_KEY"].Value)
	require.Equal(t, "/etc/herald/tls/ca.crt", env["HERALD_GRPC_CLIENT_CA"].Value)
	for _, ing := range objectsOf[*networkingv1.Ingress](objs) {
		for _, tls := range ing.Spec.TLS {
			require.NotEmpty(t, tls.SecretName)
		}
	}
}

// The public HTTP paths go through the ingress controller, and only those:
// the ack-link page and its sign-in, and providers' delivery receipts. The
// NetworkPolicy of each backend admits the ingress controller on that port.
func TestIngressesExposeOnlyThePublicPaths(t *testing.T) {
	objs := scenarios[0].render(t)
	got := map[string][]string{}
	for _, ing := range objectsOf[*networkingv1.Ingress](objs) {
		require.Len(t, ing.Spec.TLS, 1, "%s TLS", ing.Name)
		require.NotEmpty(t, ing.Spec.TLS[0].SecretName)
		require.Equal(t, ing.Spec.TLS[0].Hosts, []string{ing.Spec.Rules[0].Host}, "%s TLS covers its host", ing.Name)
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				require.Equal(t, ing.Name, p.Backend.Service.Name)
				require.Equal(t, "http", p.Backend.Service.Port.Name)
				got[ing.Name] = append(got[ing.Name], p.Path)
			}
		}
	}
	require.Equal(t, map[string][]string{
		"herald-acknowledgement": {"/ack/", "/auth/"},
		"herald-notification":    {"/v1/receipts"},
	}, got)
	for _, np := range objectsOf[*networkingv1.NetworkPolicy](objs) {
		if _, public := got[np.Name]; public {
			require.Contains(t, flows(np), "in "+ingressPeer+" TCP/8080", "%s admits the ingress controller", np.Name)
		}
	}
}

// mountsOf returns the mount paths of a container.
func mountsOf(c corev1.Container) []string {
	var out []string
	for _, m := range c.VolumeMounts {
		out = append(out, m.MountPath)
	}
	return out
}

// Every service reads the one role-binding file (docs/authorization.md)
// from the ConfigMap global.roleBindings names, mounted as a directory so
// that an edit reaches the pods (the services re-read it); without one, no
// service is given a file.
func TestRoleBindingsFromAConfigMap(t *testing.T) {
	objs := decodeAll(t, mustRender(t, renderOpts{chart: "herald", valueFiles: []string{ciValues(t, "national-values.yaml")},
		sets: []string{"global.roleBindings.configMap=herald-role-bindings"}}))
	deployments := objectsOf[*appsv1.Deployment](objs)
	require.NotEmpty(t, deployments)
	for _, d := range deployments {
		c := d.Spec.Template.Spec.Containers[0]
		require.Equal(t, "/etc/herald/authz/role-bindings.yaml", envOf(c)["HERALD_ROLE_BINDINGS_FILE"].Value, d.Name)
		require.Contains(t, mountsOf(c), "/etc/herald/authz", "%s mounts the role bindings", d.Name)
		require.Equal(t, "herald-role-bindings", volumeNamed(t, d, "role-bindings").ConfigMap.Name, d.Name)
	}
	for _, d := range objectsOf[*appsv1.Deployment](decodeAll(t, mustRender(t, renderOpts{chart: "herald", valueFiles: []string{ciValues(t, "national-values.yaml")}}))) {
		_, set := envOf(d.Spec.Template.Spec.Containers[0])["HERALD_ROLE_BINDINGS_FILE"]
		require.False(t, set, "%s reads a role-binding file nobody configured", d.Name)
	}
}
