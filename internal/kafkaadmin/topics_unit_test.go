package kafkaadmin

import (
	"testing"
)

// TestTopicsAreCreatedWithMinInSyncReplicasOneBelowReplication: with the
// broker's default of 1, acks=all would protect nothing.
func TestTopicsAreCreatedWithMinInSyncReplicasOneBelowReplication(t *testing.T) {
	for _, c := range []struct {
		replication int
		spec        TopicSpec
		want        string
	}{
		{1, TopicSpec{Name: "e", Partitions: 6}, "1"},
		{2, TopicSpec{Name: "e", Partitions: 6}, "1"},
		{3, TopicSpec{Name: "e", Partitions: 6}, "2"},
		{5, TopicSpec{Name: "e", Partitions: 6}, "4"},
		{3, TopicSpec{Name: "e", Partitions: 6, Config: map[string]string{"min.insync.replicas": "3"}}, "3"},
	} {
		tc := topicConfig(c.spec, c.replication)
		got := ""
		for _, e := range tc.ConfigEntries {
			if e.ConfigName == "min.insync.replicas" {
				got = e.ConfigValue
			}
		}
		if got != c.want || tc.ReplicationFactor != c.replication {
			t.Errorf("replication %d, spec %v: min.insync.replicas %q, want %q", c.replication, c.spec.Config, got, c.want)
		}
	}
	if tc := topicConfig(DLQTopicSpec("a"), 3); len(tc.ConfigEntries) != 3 {
		t.Errorf("the DLQ's own settings were lost: %+v", tc.ConfigEntries)
	}
}
