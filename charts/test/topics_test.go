package test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The Strimzi topics: replication 3, min.insync.replicas 2 (acks=all
// survives one broker down), the event log and DLQ kept forever (clinical
// records), the state topic compacted.
func TestKafkaTopics(t *testing.T) {
	for _, tc := range []struct {
		scenario   scenario
		partitions int64
		dlq        int64
	}{
		{scenarios[0], 12, 3},
		{scenarios[2], 48, 6},
	} {
		t.Run(tc.scenario.name, func(t *testing.T) {
			topics := map[string]*unstructured.Unstructured{}
			for _, u := range customOf(tc.scenario.render(t), "KafkaTopic") {
				name, _, _ := unstructured.NestedString(u.Object, "spec", "topicName")
				topics[name] = u
				require.Equal(t, "kafka", u.GetNamespace(), "KafkaTopic %s lives with the Kafka cluster", u.GetName())
				require.Equal(t, "herald", u.GetLabels()["strimzi.io/cluster"])
				require.Equal(t, "keep", u.GetAnnotations()["helm.sh/resource-policy"], "uninstalling must not delete clinical records")
				require.EqualValues(t, 3, u.Object["spec"].(map[string]any)["replicas"], "%s replicas", name)
				cfg, _, _ := unstructured.NestedMap(u.Object, "spec", "config")
				require.EqualValues(t, 2, cfg["min.insync.replicas"], "%s min.insync.replicas", name)
				require.Equal(t, false, cfg["unclean.leader.election.enable"], "%s unclean.leader.election.enable", name)
			}
			require.Len(t, topics, 3)
			for name, want := range map[string]struct {
				partitions int64
				cleanup    string
				forever    bool
			}{
				"herald.alert-events.v1":     {tc.partitions, "delete", true},
				"herald.alert-events.dlq.v1": {tc.dlq, "delete", true},
				"herald.alert-state.v1":      {tc.partitions, "compact", false},
			} {
				u, ok := topics[name]
				require.True(t, ok, "KafkaTopic for %s", name)
				require.EqualValues(t, want.partitions, u.Object["spec"].(map[string]any)["partitions"], "%s partitions", name)
				cfg, _, _ := unstructured.NestedMap(u.Object, "spec", "config")
				require.Equal(t, want.cleanup, cfg["cleanup.policy"], "%s cleanup.policy", name)
				if want.forever {
					require.EqualValues(t, -1, cfg["retention.ms"], "%s retention.ms", name)
				}
			}
		})
	}
}
