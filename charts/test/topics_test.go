package test

import (
	"flag"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

// eventlogConfig is the eventlog.Config a Deployment's HERALD_KAFKA_
// variables give the service.
func eventlogConfig(t *testing.T, d *appsv1.Deployment) eventlog.Config {
	t.Helper()
	cfg := eventlog.DefaultConfig()
	fs := flag.NewFlagSet("eventlog", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	env := envOf(d.Spec.Template.Spec.Containers[0])
	require.NoError(t, config.ParseEnv(fs, nil, func(name string) (string, bool) {
		e, ok := env[name]
		if strings.HasPrefix(e.Value, "/etc/herald/secrets/") && strings.HasSuffix(name, "_FILE") {
			return "", false // the secret's file exists in the pod only
		}
		return e.Value, ok
	}))
	return cfg
}

// The Strimzi topics are exactly the topics the services would create
// themselves (platform/eventlog TopicSpecs of the configuration the charts
// give them), so whichever comes first they agree: replication 3,
// min.insync.replicas 2 (acks=all survives one broker down), the event log
// and DLQ kept forever (clinical records), the state topic compacted.
func TestKafkaTopicsMatchTheServicesTopicSpecs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		o          renderOpts
		partitions int
		retention  string
	}{
		{name: "regional defaults", o: renderOpts{chart: "herald"}, partitions: 12, retention: "-1"},
		{name: "national", o: renderOpts{chart: "herald", valueFiles: []string{ciValues(t, "national-values.yaml")}}, partitions: 48, retention: "-1"},
		{name: "ten years", o: renderOpts{chart: "herald", sets: []string{"global.kafka.retention=87600h"}}, partitions: 12, retention: "315360000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := decodeAll(t, mustRender(t, tc.o))
			topics := map[string]*unstructured.Unstructured{}
			for _, u := range customOf(objs, "KafkaTopic") {
				name, _, _ := unstructured.NestedString(u.Object, "spec", "topicName")
				topics[name] = u
				require.Equal(t, "kafka", u.GetNamespace(), "KafkaTopic %s lives with the Kafka cluster", u.GetName())
				require.Equal(t, "herald", u.GetLabels()["strimzi.io/cluster"])
				require.Equal(t, "keep", u.GetAnnotations()["helm.sh/resource-policy"], "uninstalling must not delete clinical records")
				cfg, _, _ := unstructured.NestedMap(u.Object, "spec", "config")
				require.Equal(t, false, cfg["unclean.leader.election.enable"], "%s unclean.leader.election.enable", name)
			}
			require.Len(t, topics, 6)

			for _, d := range objectsOf[*appsv1.Deployment](objs) {
				// The audit trail's topics are kept forever, whatever the
				// log's retention.
				for _, spec := range audit.DefaultTopics().Specs(eventlogConfig(t, d)) {
					u, ok := topics[spec.Topic]
					require.True(t, ok, "%s uses audit topic %s, which has no KafkaTopic", d.Name, spec.Topic)
					s := u.Object["spec"].(map[string]any)
					require.EqualValues(t, spec.NumPartitions, s["partitions"], "%s partitions", spec.Topic)
					cfg := s["config"].(map[string]any)
					for _, e := range spec.ConfigEntries {
						require.Equal(t, e.ConfigValue, scalar(cfg[e.ConfigName]), "%s %s (KafkaTopic vs %s)", spec.Topic, e.ConfigName, d.Name)
					}
				}
				specs := eventlog.TopicSpecs(eventlogConfig(t, d))
				require.Len(t, specs, 3)
				for _, spec := range specs {
					u, ok := topics[spec.Topic]
					require.True(t, ok, "%s uses topic %s, which has no KafkaTopic", d.Name, spec.Topic)
					s := u.Object["spec"].(map[string]any)
					require.EqualValues(t, spec.NumPartitions, s["partitions"], "%s partitions", spec.Topic)
					require.EqualValues(t, tc.partitions, s["partitions"], "%s partitions", spec.Topic)
					require.EqualValues(t, spec.ReplicationFactor, s["replicas"], "%s replicas", spec.Topic)
					require.EqualValues(t, 3, s["replicas"], "%s replicas", spec.Topic)
					cfg := s["config"].(map[string]any)
					for _, e := range spec.ConfigEntries {
						require.Equal(t, e.ConfigValue, scalar(cfg[e.ConfigName]), "%s %s (KafkaTopic vs %s)", spec.Topic, e.ConfigName, d.Name)
					}
					require.Equal(t, "2", scalar(cfg["min.insync.replicas"]), "%s min.insync.replicas", spec.Topic)
					if strings.Contains(spec.Topic, "state") {
						require.Equal(t, "compact", cfg["cleanup.policy"], "%s cleanup.policy", spec.Topic)
					} else {
						require.Equal(t, "delete", cfg["cleanup.policy"], "%s cleanup.policy", spec.Topic)
						require.Equal(t, tc.retention, scalar(cfg["retention.ms"]), "%s retention.ms", spec.Topic)
					}
				}
			}
		})
	}
}

// scalar prints a decoded YAML scalar the way Kafka's config strings read.
func scalar(v any) string {
	switch n := v.(type) {
	case float64:
		return strconv.FormatInt(int64(n), 10)
	case int64:
		return strconv.FormatInt(n, 10)
	case string:
		return n
	case bool:
		return strconv.FormatBool(n)
	}
	return "<missing>"
}
