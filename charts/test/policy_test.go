package test

import (
	"slices"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Peers of the regional default values, as peerString prints them.
const (
	dnsPeer        = "ns{kubernetes.io/metadata.name=kube-system} pod{k8s-app=kube-dns}"
	kafkaPeer      = "ns{kubernetes.io/metadata.name=kafka} pod{strimzi.io/cluster=herald,strimzi.io/kind=Kafka}"
	redisPeer      = "ns{kubernetes.io/metadata.name=redis} pod{app.kubernetes.io/name=redis}"
	otelPeer       = "ns{kubernetes.io/metadata.name=observability} pod{app.kubernetes.io/name=opentelemetry-collector}"
	prometheusPeer = "ns{kubernetes.io/metadata.name=monitoring} pod{app.kubernetes.io/name=prometheus}"
	ingressPeer    = "ns{kubernetes.io/metadata.name=ingress-nginx} pod{app.kubernetes.io/name=ingress-nginx}"
	risPeer        = "cidr=198.51.100.0/24"
	notifPeer      = "pod{app.kubernetes.io/instance=herald,app.kubernetes.io/name=notification}"
	rulesPeer      = "pod{app.kubernetes.io/instance=herald,app.kubernetes.io/name=rules}"
	smtpPeer       = "cidr=203.0.113.25/32"
	proxyPeer      = "cidr=203.0.113.10/32"
)

// The NetworkPolicies of the regional defaults allow exactly the flows of
// shared/DESIGN.md: nothing more (deny by default), nothing less.
func TestNetworkPoliciesAllowOnlyTheDesignedFlows(t *testing.T) {
	common := []string{
		"in " + prometheusPeer + " TCP/9464",
		"out " + dnsPeer + " UDP/53",
		"out " + dnsPeer + " TCP/53",
		"out " + kafkaPeer + " TCP/9092",
		"out " + otelPeer + " TCP/4317",
	}
	redis := "out " + redisPeer + " TCP/6379"
	want := map[string][]string{
		"intake": append(slices.Clone(common), redis,
			"in "+risPeer+" TCP/2575", // HL7 v2 over MLLP
			"in "+risPeer+" TCP/8080", // FHIR R4
			"in "+risPeer+" TCP/9090", // gRPC
		),
		"rules": append(slices.Clone(common),
			"in "+notifPeer+" TCP/9090", // ResolveTargets
		),
		"notification": append(slices.Clone(common), redis,
			"in "+ingressPeer+" TCP/8080", // delivery receipts
			"out "+rulesPeer+" TCP/9090",  // ResolveTargets
			"out "+smtpPeer+" TCP/587",    // SMTP relay
			"out "+proxyPeer+" TCP/3128",  // SMS, Teams, webhooks through the egress proxy
		),
		"acknowledgement": append(slices.Clone(common), redis,
			"in "+ingressPeer+" TCP/8080", // the ack-link page
			"out "+proxyPeer+" TCP/3128",  // the OIDC provider through the egress proxy
		),
	}
	objs := scenarios[0].render(t)
	policies := objectsOf[*networkingv1.NetworkPolicy](objs)
	deployments := byName(objectsOf[*appsv1.Deployment](objs), func(d *appsv1.Deployment) string { return d.Name })
	require.Len(t, policies, len(services))
	for _, svc := range services {
		t.Run(svc, func(t *testing.T) {
			np := policyFor(t, policies, labels.Set(deployments["herald-"+svc].Spec.Template.Labels))
			w := want[svc]
			sort.Strings(w)
			require.Equal(t, w, flows(np))
		})
	}
}

// Without configured clients, destinations or scrapers a service is
// unreachable and reaches nothing but DNS and Kafka: a rule with no peers
// is left out, never rendered as "from anywhere".
func TestNetworkPolicyWithoutPeersDeniesRatherThanAllows(t *testing.T) {
	objs := decodeAll(t, mustRender(t, renderOpts{
		chart: "herald",
		setJSON: []string{
			`global.network.prometheus.peers=[]`,
			`intake.networkPolicy.clients=[]`,
			`notification.networkPolicy.receiptSources=[]`,
			`notification.networkPolicy.destinations=[]`,
			`acknowledgement.networkPolicy.ackPageClients=[]`,
			`acknowledgement.networkPolicy.oidcProvider={"cidrs":[],"ports":[443]}`,
		},
		sets: []string{"global.otel.endpoint="},
	}))
	base := []string{"out " + dnsPeer + " TCP/53", "out " + dnsPeer + " UDP/53", "out " + kafkaPeer + " TCP/9092"}
	for _, np := range objectsOf[*networkingv1.NetworkPolicy](objs) {
		got := flows(np)
		for _, f := range got {
			if slices.Contains(base, f) || f == "out "+redisPeer+" TCP/6379" {
				continue
			}
			if np.Name == "herald-rules" && f == "in "+notifPeer+" TCP/9090" {
				continue
			}
			if np.Name == "herald-notification" && f == "out "+rulesPeer+" TCP/9090" {
				continue
			}
			t.Errorf("%s allows %q with no peers configured for it", np.Name, f)
		}
	}
}
