package test

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

func TestLintEveryChartWithItsDefaultValues(t *testing.T) {
	for _, c := range charts {
		t.Run(c, func(t *testing.T) {
			require.Empty(t, lint(t, c), "helm lint %s", c)
		})
	}
}

func TestLintUmbrellaWithCIValues(t *testing.T) {
	for _, f := range []string{"minimal-values.yaml", "national-values.yaml"} {
		t.Run(f, func(t *testing.T) {
			require.Empty(t, lint(t, "herald", ciValues(t, f)), "helm lint herald -f ci/%s", f)
		})
	}
}

// scenario is one values file of the umbrella chart and what it must produce.
type scenario struct {
	name        string
	valuesFile  string // in ci/; empty for the chart's defaults
	autoscaling bool
	pdb         bool
	topics      bool
	otel        bool
	monitors    bool
	partitions  int
}

var scenarios = []scenario{
	{name: "regional defaults", autoscaling: true, pdb: true, topics: true, otel: true, partitions: 12},
	{name: "minimal", valuesFile: "minimal-values.yaml", partitions: 12},
	{name: "national", valuesFile: "national-values.yaml", autoscaling: true, pdb: true, topics: true, otel: true, monitors: true, partitions: 48},
}

func (s scenario) render(t *testing.T) []object {
	t.Helper()
	o := renderOpts{chart: "herald"}
	if s.valuesFile != "" {
		o.valueFiles = []string{ciValues(t, s.valuesFile)}
	}
	objs := decodeAll(t, mustRender(t, o))
	require.NotEmpty(t, objs)
	return objs
}

// Every manifest of every scenario decodes strictly, and every service has
// the full shape: Deployment, Service, ServiceAccount, NetworkPolicy, and
// HPA / PDB / ServiceMonitor where the scenario asks for them.
func TestUmbrellaScenarios(t *testing.T) {
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			objs := s.render(t)
			require.Empty(t, objectsOf[*corev1.Secret](objs), "the charts must reference Secrets, never create them")
			for _, o := range objs {
				if o.gvk.Kind != "KafkaTopic" {
					require.Equal(t, namespace, o.ns, "%s %s namespace", o.gvk.Kind, o.name)
				}
			}
			deployments := byName(objectsOf[*appsv1.Deployment](objs), func(d *appsv1.Deployment) string { return d.Name })
			require.ElementsMatch(t, []string{"herald-intake", "herald-rules", "herald-notification", "herald-acknowledgement"}, slices.Collect(maps.Keys(deployments)))
			hpas := byName(objectsOf[*autoscalingv2.HorizontalPodAutoscaler](objs), func(h *autoscalingv2.HorizontalPodAutoscaler) string { return h.Spec.ScaleTargetRef.Name })
			pdbs := objectsOf[*policyv1.PodDisruptionBudget](objs)
			policies := objectsOf[*networkingv1.NetworkPolicy](objs)
			accounts := byName(objectsOf[*corev1.ServiceAccount](objs), func(a *corev1.ServiceAccount) string { return a.Name })
			svcs := byName(objectsOf[*corev1.Service](objs), func(s *corev1.Service) string { return s.Name })
			monitors := customOf(objs, "ServiceMonitor")

			for _, svc := range services {
				t.Run(svc, func(t *testing.T) {
					d := deployments["herald-"+svc]
					checkDeployment(t, svc, d, s)
					podLabels := labels.Set(d.Spec.Template.Labels)

					sa, ok := accounts[d.Spec.Template.Spec.ServiceAccountName]
					require.True(t, ok, "ServiceAccount %s of %s is rendered", d.Spec.Template.Spec.ServiceAccountName, d.Name)
					require.NotNil(t, sa.AutomountServiceAccountToken)
					require.False(t, *sa.AutomountServiceAccountToken, "ServiceAccount %s automounts its token", sa.Name)

					service, ok := svcs[d.Name]
					require.True(t, ok, "Service %s is rendered", d.Name)
					require.Equal(t, corev1.ServiceTypeClusterIP, service.Spec.Type)
					require.True(t, selects(service.Spec.Selector, podLabels), "Service %s selects its pods", d.Name)

					hpa, hasHPA := hpas[d.Name]
					require.Equal(t, s.autoscaling, hasHPA, "HPA for %s", d.Name)
					if hasHPA {
						checkHPA(t, svc, d, hpa, s.partitions)
					} else {
						require.NotNil(t, d.Spec.Replicas, "%s without HPA sets replicas", d.Name)
					}

					var mine []*policyv1.PodDisruptionBudget
					for _, p := range pdbs {
						sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
						require.NoError(t, err)
						if sel.Matches(podLabels) {
							mine = append(mine, p)
						}
					}
					require.Len(t, mine, map[bool]int{true: 1, false: 0}[s.pdb], "PodDisruptionBudgets selecting %s", d.Name)
					if s.pdb {
						checkPDB(t, mine[0], hpa)
					}

					np := policyFor(t, policies, podLabels)
					checkPolicyShape(t, np, d)

					var mon *unstructured.Unstructured
					for _, m := range monitors {
						if m.GetName() == d.Name {
							mon = m
						}
					}
					require.Equal(t, s.monitors, mon != nil, "ServiceMonitor for %s", d.Name)
					if mon != nil {
						sel, _, _ := unstructured.NestedStringMap(mon.Object, "spec", "selector", "matchLabels")
						require.True(t, selects(sel, labels.Set(service.Labels)), "ServiceMonitor %s selects Service %s", mon.GetName(), service.Name)
						eps, _, _ := unstructured.NestedSlice(mon.Object, "spec", "endpoints")
						require.Len(t, eps, 1)
						require.Equal(t, "metrics", eps[0].(map[string]any)["port"])
					}
				})
			}
			require.Len(t, customOf(objs, "KafkaTopic"), map[bool]int{true: 6, false: 0}[s.topics], "KafkaTopics (the log's three and the audit trail's three)")
		})
	}
}

func byName[T any](items []T, key func(T) string) map[string]T {
	m := make(map[string]T, len(items))
	for _, it := range items {
		m[key(it)] = it
	}
	return m
}

func selects(selector map[string]string, podLabels labels.Set) bool {
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(podLabels)
}

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	return byName(c.Env, func(e corev1.EnvVar) string { return e.Name })
}

func portOf(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %q (ports %v)", c.Name, name, c.Ports)
	return 0
}

// servicePorts are the named container ports each service must expose.
var servicePorts = map[string]map[string]int32{
	"intake":          {"grpc": 9090, "metrics": 9464, "mllp": 2575, "http": 8080},
	"rules":           {"grpc": 9090, "metrics": 9464},
	"notification":    {"grpc": 9090, "metrics": 9464, "http": 8080},
	"acknowledgement": {"grpc": 9090, "metrics": 9464, "http": 8080},
}

// listenEnv names the listen-address variable of each port besides gRPC and metrics.
var listenEnv = map[string]map[string]string{
	"intake":          {"mllp": "HERALD_MLLP_ADDR", "http": "HERALD_FHIR_ADDR"},
	"rules":           {},
	"notification":    {"http": "HERALD_RECEIPTS_ADDR"},
	"acknowledgement": {"http": "HERALD_HTTP_ADDR"},
}

func checkDeployment(t *testing.T, svc string, d *appsv1.Deployment, s scenario) {
	t.Helper()
	require.NotNil(t, d, "Deployment herald-%s", svc)
	pod := d.Spec.Template.Spec
	require.True(t, selects(d.Spec.Selector.MatchLabels, labels.Set(d.Spec.Template.Labels)), "%s selector matches its template", d.Name)
	require.NotNil(t, pod.AutomountServiceAccountToken)
	require.False(t, *pod.AutomountServiceAccountToken, "%s mounts a service account token", d.Name)
	require.False(t, pod.HostNetwork || pod.HostPID || pod.HostIPC, "%s uses host namespaces", d.Name)

	// Pod security: non-root, seccomp RuntimeDefault.
	psc := pod.SecurityContext
	require.NotNil(t, psc, "%s pod securityContext", d.Name)
	require.NotNil(t, psc.RunAsNonRoot)
	require.True(t, *psc.RunAsNonRoot, "%s pod runAsNonRoot", d.Name)
	require.NotNil(t, psc.SeccompProfile)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type)

	require.Len(t, pod.Containers, 1, "%s containers", d.Name)
	require.Empty(t, pod.InitContainers)
	c := pod.Containers[0]
	require.Equal(t, svc, c.Name)
	require.NotContains(t, c.Image, ":latest", "%s image", d.Name)

	// Container security: restricted.
	sc := c.SecurityContext
	require.NotNil(t, sc, "%s container securityContext", d.Name)
	require.NotNil(t, sc.RunAsNonRoot)
	require.True(t, *sc.RunAsNonRoot, "runAsNonRoot")
	require.NotNil(t, sc.ReadOnlyRootFilesystem)
	require.True(t, *sc.ReadOnlyRootFilesystem, "readOnlyRootFilesystem")
	require.NotNil(t, sc.AllowPrivilegeEscalation)
	require.False(t, *sc.AllowPrivilegeEscalation, "allowPrivilegeEscalation")
	if sc.Privileged != nil {
		require.False(t, *sc.Privileged, "privileged")
	}
	require.NotNil(t, sc.Capabilities)
	require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, "capabilities.drop")
	require.Empty(t, sc.Capabilities.Add, "capabilities.add")
	require.NotNil(t, sc.SeccompProfile)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)

	// Ports.
	var names []string
	for _, p := range c.Ports {
		names = append(names, p.Name)
		require.Equal(t, corev1.ProtocolTCP, p.Protocol)
		require.Greater(t, p.ContainerPort, int32(1023), "%s port %s needs no privilege", d.Name, p.Name)
	}
	require.ElementsMatch(t, slices.Collect(maps.Keys(servicePorts[svc])), names, "%s container ports", d.Name)
	for name, want := range servicePorts[svc] {
		require.Equal(t, want, portOf(t, c, name), "%s port %s", d.Name, name)
	}

	// Native gRPC probes on the gRPC port, whole-server health (service ""),
	// or, when gRPC is mutual TLS, on the plaintext health-only listener
	// the service opens (grpc-health-addr).
	grpcPort := portOf(t, c, "grpc")
	if h, ok := envOf(c)["HERALD_GRPC_HEALTH_ADDR"]; ok {
		port, err := strconv.Atoi(strings.TrimPrefix(h.Value, ":"))
		require.NoError(t, err, "%s HERALD_GRPC_HEALTH_ADDR", d.Name)
		grpcPort = int32(port)
	}
	for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		require.NotNil(t, p, "%s %s probe", d.Name, kind)
		require.NotNil(t, p.GRPC, "%s %s probe is a gRPC probe", d.Name, kind)
		require.Nil(t, p.HTTPGet, "%s %s probe", d.Name, kind)
		require.Nil(t, p.TCPSocket, "%s %s probe", d.Name, kind)
		require.Nil(t, p.Exec, "%s %s probe", d.Name, kind)
		require.Equal(t, grpcPort, p.GRPC.Port, "%s %s probe port", d.Name, kind)
		require.NotNil(t, p.GRPC.Service, "%s %s probe names the service", d.Name, kind)
		require.Equal(t, "", *p.GRPC.Service, "%s %s probe service", d.Name, kind)
		require.Positive(t, p.PeriodSeconds)
		require.Positive(t, p.FailureThreshold)
	}

	// Resources.
	require.False(t, c.Resources.Requests.Cpu().IsZero(), "%s requests cpu", d.Name)
	require.False(t, c.Resources.Requests.Memory().IsZero(), "%s requests memory", d.Name)
	require.False(t, c.Resources.Limits.Memory().IsZero(), "%s limits memory", d.Name)

	// Read-only root: a writable /tmp only.
	var tmp bool
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/tmp" {
			tmp = true
		} else {
			require.True(t, m.ReadOnly, "%s mount %s is read-only", d.Name, m.MountPath)
		}
	}
	require.True(t, tmp, "%s mounts an emptyDir at /tmp", d.Name)

	// Zone spread.
	var zone *corev1.TopologySpreadConstraint
	for i := range pod.TopologySpreadConstraints {
		if pod.TopologySpreadConstraints[i].TopologyKey == "topology.kubernetes.io/zone" {
			zone = &pod.TopologySpreadConstraints[i]
		}
	}
	require.NotNil(t, zone, "%s spreads across zones", d.Name)
	sel, err := metav1.LabelSelectorAsSelector(zone.LabelSelector)
	require.NoError(t, err)
	require.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "%s zone spread selects its own pods", d.Name)
	require.Equal(t, int32(1), zone.MaxSkew)

	// Configuration: HERALD_<FLAG> variables, listening on all interfaces.
	env := envOf(c)
	for name, want := range map[string]string{
		"HERALD_GRPC_ADDR":                 ":9090",
		"HERALD_METRICS_ADDR":              ":9464",
		"HERALD_KAFKA_EVENTS_TOPIC":        "herald.alert-events.v1",
		"HERALD_KAFKA_DLQ_TOPIC":           "herald.alert-events.dlq.v1",
		"HERALD_KAFKA_STATE_TOPIC":         "herald.alert-state.v1",
		"HERALD_KAFKA_REPLICATION_FACTOR":  "3",
		"HERALD_KAFKA_MIN_INSYNC_REPLICAS": "2",
		"HERALD_KAFKA_PARTITIONS":          strconv.Itoa(s.partitions),
		"OTEL_SERVICE_NAME":                "herald-" + svc,
	} {
		require.Contains(t, env, name, "%s env", d.Name)
		require.Equal(t, want, env[name].Value, "%s env %s", d.Name, name)
	}
	require.NotEmpty(t, env["HERALD_KAFKA_BROKERS"].Value, "%s HERALD_KAFKA_BROKERS", d.Name)
	if s.otel {
		require.NotEmpty(t, env["HERALD_OTLP_ENDPOINT"].Value, "%s HERALD_OTLP_ENDPOINT", d.Name)
		require.Equal(t, "http://"+env["HERALD_OTLP_ENDPOINT"].Value, env["OTEL_EXPORTER_OTLP_ENDPOINT"].Value)
	} else {
		require.NotContains(t, env, "HERALD_OTLP_ENDPOINT")
		require.NotContains(t, env, "OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	for port, addr := range listenEnv[svc] {
		require.Equal(t, fmt.Sprintf(":%d", servicePorts[svc][port]), env[addr].Value, "%s %s", d.Name, addr)
	}
	_, usesRedis := env["HERALD_REDIS_ADDR"]
	require.Equal(t, svc != "rules", usesRedis, "%s HERALD_REDIS_ADDR", d.Name)
	checkSecretsAreReferences(t, d.Name, c.Env)

	// Prometheus scraping by annotation unless a ServiceMonitor does it.
	ann := d.Spec.Template.Annotations
	if !s.monitors {
		require.Equal(t, "true", ann["prometheus.io/scrape"], "%s scrape annotation", d.Name)
		require.Equal(t, "9464", ann["prometheus.io/port"], "%s scrape port", d.Name)
	}
}

// checkSecretsAreReferences: a credential reaches a service as a file of a
// mounted Secret (a _FILE variable naming a path under /etc/herald/secrets),
// never as an environment variable's value; a variable that carries a
// credential-like value (a user name) comes from a Secret, never from a
// literal in the values.
func checkSecretsAreReferences(t *testing.T, owner string, env []corev1.EnvVar) {
	t.Helper()
	for _, e := range env {
		upper := strings.ToUpper(e.Name)
		if strings.HasSuffix(upper, "_FILE") && (strings.Contains(upper, "PASSWORD") || strings.Contains(upper, "SECRET") || strings.Contains(upper, "API_KEY") ||
			strings.Contains(upper, "TOKEN") || strings.Contains(upper, "REFERENCE_KEY")) {
			require.True(t, strings.HasPrefix(e.Value, "/etc/herald/secrets/"), "%s env %s names a mounted Secret's file, got %q", owner, e.Name, e.Value)
			continue
		}
		if strings.Contains(upper, "PASSWORD") || strings.Contains(upper, "SECRET") || strings.Contains(upper, "API_KEY") {
			t.Errorf("%s env %s carries a secret in the environment: secrets are mounted as files", owner, e.Name)
			continue
		}
		if strings.Contains(upper, "TOKEN") || strings.HasSuffix(upper, "_USERNAME") {
			require.Empty(t, e.Value, "%s env %s has a literal value", owner, e.Name)
			require.NotNil(t, e.ValueFrom, "%s env %s", owner, e.Name)
			require.NotNil(t, e.ValueFrom.SecretKeyRef, "%s env %s comes from a Secret", owner, e.Name)
			require.NotEmpty(t, e.ValueFrom.SecretKeyRef.Name)
			require.NotEmpty(t, e.ValueFrom.SecretKeyRef.Key)
		}
	}
}

func checkHPA(t *testing.T, svc string, d *appsv1.Deployment, h *autoscalingv2.HorizontalPodAutoscaler, partitions int) {
	t.Helper()
	require.Nil(t, d.Spec.Replicas, "%s leaves replicas to its HPA", d.Name)
	require.Equal(t, "Deployment", h.Spec.ScaleTargetRef.Kind)
	require.Equal(t, "apps/v1", h.Spec.ScaleTargetRef.APIVersion)
	require.NotNil(t, h.Spec.MinReplicas)
	require.GreaterOrEqual(t, *h.Spec.MinReplicas, int32(2), "%s runs at least two replicas", h.Name)
	require.GreaterOrEqual(t, h.Spec.MaxReplicas, *h.Spec.MinReplicas)
	if svc != "intake" {
		require.LessOrEqual(t, int(h.Spec.MaxReplicas), partitions, "%s: consumer replicas beyond the partition count sit idle", h.Name)
	}
	require.NotEmpty(t, h.Spec.Metrics)
	require.Equal(t, autoscalingv2.ResourceMetricSourceType, h.Spec.Metrics[0].Type)
	require.Equal(t, corev1.ResourceCPU, h.Spec.Metrics[0].Resource.Name)
	require.NotNil(t, h.Spec.Behavior)
	require.NotNil(t, h.Spec.Behavior.ScaleDown)
}

// checkPDB: a budget that still lets a node drain proceed at minimum scale.
func checkPDB(t *testing.T, p *policyv1.PodDisruptionBudget, h *autoscalingv2.HorizontalPodAutoscaler) {
	t.Helper()
	require.True(t, (p.Spec.MinAvailable == nil) != (p.Spec.MaxUnavailable == nil), "%s sets one of minAvailable and maxUnavailable", p.Name)
	if p.Spec.MinAvailable != nil {
		require.Positive(t, p.Spec.MinAvailable.IntValue())
		if h != nil {
			require.Less(t, int32(p.Spec.MinAvailable.IntValue()), *h.Spec.MinReplicas, "%s minAvailable leaves room to drain a node at minReplicas", p.Name)
		}
	} else {
		require.Positive(t, p.Spec.MaxUnavailable.IntValue())
	}
}

func policyFor(t *testing.T, policies []*networkingv1.NetworkPolicy, podLabels labels.Set) *networkingv1.NetworkPolicy {
	t.Helper()
	var found []*networkingv1.NetworkPolicy
	for _, np := range policies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		require.NoError(t, err)
		if !sel.Empty() && sel.Matches(podLabels) {
			found = append(found, np)
		}
	}
	require.Len(t, found, 1, "NetworkPolicies selecting pods %v", podLabels)
	return found[0]
}

// checkPolicyShape: deny by default in both directions; every rule names
// its peers and ports (no "from anywhere", no "any port"), and ingress goes
// only to ports the container serves.
func checkPolicyShape(t *testing.T, np *networkingv1.NetworkPolicy, d *appsv1.Deployment) {
	t.Helper()
	require.ElementsMatch(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, np.Spec.PolicyTypes, "%s policyTypes", np.Name)
	served := map[int32]bool{}
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		served[p.ContainerPort] = true
	}
	for i, r := range np.Spec.Ingress {
		require.NotEmpty(t, r.From, "%s ingress rule %d allows every source", np.Name, i)
		require.NotEmpty(t, r.Ports, "%s ingress rule %d allows every port", np.Name, i)
		for _, p := range r.Ports {
			require.NotNil(t, p.Port)
			require.True(t, served[p.Port.IntVal], "%s ingress rule %d opens port %v the container does not serve", np.Name, i, p.Port)
		}
		checkPeers(t, np.Name, r.From)
	}
	for i, r := range np.Spec.Egress {
		require.NotEmpty(t, r.To, "%s egress rule %d allows every destination", np.Name, i)
		require.NotEmpty(t, r.Ports, "%s egress rule %d allows every port", np.Name, i)
		checkPeers(t, np.Name, r.To)
	}
}

func checkPeers(t *testing.T, owner string, peers []networkingv1.NetworkPolicyPeer) {
	t.Helper()
	for _, p := range peers {
		require.True(t, p.IPBlock != nil || p.PodSelector != nil || p.NamespaceSelector != nil, "%s has an empty peer", owner)
		if p.IPBlock != nil {
			require.NotEqual(t, "0.0.0.0/0", p.IPBlock.CIDR, "%s allows the whole Internet", owner)
			require.NotEqual(t, "::/0", p.IPBlock.CIDR, "%s allows the whole Internet", owner)
		}
		if p.NamespaceSelector != nil {
			require.False(t, len(p.NamespaceSelector.MatchLabels) == 0 && len(p.NamespaceSelector.MatchExpressions) == 0, "%s selects every namespace", owner)
		}
	}
}

// flows lists a policy's allowed flows as "<direction> <peer> <protocol>/<port>".
func flows(np *networkingv1.NetworkPolicy) []string {
	var out []string
	add := func(dir string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) {
		for _, peer := range peers {
			for _, port := range ports {
				out = append(out, fmt.Sprintf("%s %s %s/%s", dir, peerString(peer), *port.Protocol, port.Port.String()))
			}
		}
	}
	for _, r := range np.Spec.Ingress {
		add("in", r.From, r.Ports)
	}
	for _, r := range np.Spec.Egress {
		add("out", r.To, r.Ports)
	}
	sort.Strings(out)
	return out
}

func peerString(p networkingv1.NetworkPolicyPeer) string {
	var parts []string
	if p.IPBlock != nil {
		parts = append(parts, "cidr="+p.IPBlock.CIDR)
	}
	if p.NamespaceSelector != nil {
		parts = append(parts, "ns{"+labels.Set(p.NamespaceSelector.MatchLabels).String()+"}")
	}
	if p.PodSelector != nil {
		parts = append(parts, "pod{"+labels.Set(p.PodSelector.MatchLabels).String()+"}")
	}
	return strings.Join(parts, " ")
}
