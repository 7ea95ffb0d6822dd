package operations

import (
	"slices"
	"testing"
)

func TestALagThatCannotBeKnownIsNeverZero(t *testing.T) {
	cases := []struct {
		name        string
		partitions  []PartitionStatus
		aheadFound  []int // what the appliers found
		wantLag     int64
		wantUnknown []int
		wantText    string
	}{
		{"every partition behind its log end", []PartitionStatus{
			{Partition: 0, LogEnd: 10, Applied: 7, LagMessages: 3}, {Partition: 1, LogEnd: 5, Applied: 5}},
			nil, 3, nil, "3"},
		{"one partition ahead of a recreated log", []PartitionStatus{
			{Partition: 0, LogEnd: 10, Applied: 10}, {Partition: 1, LogEnd: 5, Applied: 900, AheadOfLog: true}},
			nil, -1, []int{1}, "unknown"},
		{"a log start that passed the position", []PartitionStatus{
			{Partition: 0, LogStart: 50, LogEnd: 60, Applied: 20, LagMessages: 40, LogPassed: true}},
			nil, -1, []int{0}, "unknown"},
		{"an applier found the record at the position is another one", []PartitionStatus{
			{Partition: 0, LogEnd: 300, Applied: 100, LagMessages: 200}, {Partition: 1, LogEnd: 8, Applied: 8}},
			[]int{0}, -1, []int{0}, "unknown"},
	}
	for _, c := range cases {
		st := TargetStatus{Partitions: c.partitions}
		for _, p := range c.partitions {
			st.LagMessages += p.LagMessages
		}
		st.markUnknown(c.aheadFound)
		if st.LagMessages != c.wantLag || !slices.Equal(st.LagUnknown, c.wantUnknown) || st.LagText() != c.wantText {
			t.Errorf("%s: lag %d (%q), unknown %v; want %d (%q), %v", c.name, st.LagMessages, st.LagText(), st.LagUnknown,
				c.wantLag, c.wantText, c.wantUnknown)
		}
		for _, p := range st.Partitions {
			if p.LagUnknown != slices.Contains(c.wantUnknown, p.Partition) || p.LagUnknown && p.LagMessages != -1 {
				t.Errorf("%s: partition %+v", c.name, p)
			}
		}
	}
}
