package test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A wrong values file fails at install with a message naming the setting.
func TestSchemaRejectsWrongValues(t *testing.T) {
	for _, tc := range []struct {
		name    string
		chart   string
		sets    []string
		setJSON []string
		want    []string
	}{
		{name: "replicas as a word", chart: "herald", sets: []string{"intake.replicaCount=three"},
			want: []string{"intake", "/replicaCount", "got string, want integer"}},
		{name: "unknown top-level key", chart: "herald", sets: []string{"replicas=3"},
			want: []string{"additional properties 'replicas' not allowed"}},
		{name: "unknown service key", chart: "herald", sets: []string{"rules.replicas=3"},
			want: []string{"rules", "additional properties 'replicas' not allowed"}},
		{name: "no kafka brokers", chart: "herald", setJSON: []string{"global.kafka.brokers=[]"},
			want: []string{"/global/kafka/brokers", "minItems"}},
		{name: "kafka brokers removed", chart: "herald", sets: []string{"global.kafka.brokers=null"},
			want: []string{"/global/kafka", "missing property 'brokers'"}},
		{name: "broker without port", chart: "herald", setJSON: []string{`global.kafka.brokers=["kafka.example"]`},
			want: []string{"/global/kafka/brokers/0", "does not match pattern"}},
		{name: "a password value instead of a Secret", chart: "herald", sets: []string{"notification.smtp.password=hunter2"},
			want: []string{"notification", "/smtp", "additional properties 'password' not allowed"}},
		{name: "bad log level", chart: "herald", sets: []string{"global.logLevel=verbose"},
			want: []string{"/global/logLevel"}},
		{name: "bad port", chart: "herald", sets: []string{"intake.ports.mllp=70000"},
			want: []string{"/ports/mllp", "maximum"}},
		{name: "bundle for a malformed ODS code", chart: "herald", sets: []string{"rules.bundles.not-ods.trust\\.yaml=x"},
			want: []string{"rules", "'not-ods' does not match pattern"}},
		{name: "standalone chart without brokers", chart: "notification", setJSON: []string{"global.kafka.brokers=[]"},
			want: []string{"notification", "/global/kafka/brokers", "minItems"}},
		{name: "consumers beyond partitions", chart: "herald", sets: []string{"acknowledgement.autoscaling.maxReplicas=13"},
			want: []string{"acknowledgement.autoscaling.maxReplicas (13) exceeds global.kafka.partitions (12)"}},
		{name: "network policy without kafka peers", chart: "herald", setJSON: []string{"global.network.kafka.peers=[]"},
			want: []string{"global.network.kafka.peers is empty"}},
		{name: "no trust for intake", chart: "herald", sets: []string{"intake.tenants=null"},
			want: []string{"intake.tenants is empty"}},
		{name: "no event signing keys", chart: "herald", sets: []string{"global.eventSigning.signingKeys.existingSecret="},
			want: []string{"/global/eventSigning/signingKeys/existingSecret", "minLength"}},
		{name: "event key set removed", chart: "rules", sets: []string{"global.eventSigning.keySet=null"},
			want: []string{"/global/eventSigning", "missing property 'keySet'"}},
		{name: "SMS without a Notify template", chart: "herald", sets: []string{"notification.sms.existingSecret=herald-notify"},
			want: []string{"notification.sms.templateID is required"}},
		// No values file (the national one included) can make a service a
		// development system: plaintext hops, no login on ack links.
		{name: "plaintext by setting", chart: "herald", sets: []string{"intake.settings.insecure=true"},
			want: []string{"intake", "invalid propertyName 'insecure'"}},
		{name: "development profile by setting", chart: "herald", sets: []string{"rules.settings.profile=development"},
			want: []string{"rules", "invalid propertyName 'profile'"}},
		{name: "development identity by setting", chart: "herald", sets: []string{"acknowledgement.settings.dev-identity=link-recipient"},
			want: []string{"acknowledgement", "invalid propertyName 'dev-identity'"}},
		{name: "plaintext by environment", chart: "herald", setJSON: []string{`notification.extraEnv=[{"name":"HERALD_INSECURE","value":"true"}]`},
			want: []string{"notification", "/extraEnv/0/name"}},
		{name: "development identity by environment", chart: "acknowledgement", setJSON: []string{`extraEnv=[{"name":"HERALD_DEV_IDENTITY","value":"x"}]`},
			want: []string{"/extraEnv/0/name"}},
		{name: "gRPC TLS with plaintext probes", chart: "herald", sets: []string{"rules.tls.existingSecret=rules-tls"},
			want: []string{"rules.probes.port is not"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, renderOpts{chart: tc.chart, sets: tc.sets, setJSON: tc.setJSON})
			require.Error(t, err, "helm template %s %v %v must fail", tc.chart, tc.sets, tc.setJSON)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}
