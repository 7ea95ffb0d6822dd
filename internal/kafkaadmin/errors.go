package kafkaadmin

import "errors"

// ErrNoTopic is returned (wrapped) when a topic sluice asks about does not
// exist.
var ErrNoTopic = errors.New("topic does not exist")

// ErrPartitionCount is returned (wrapped) when a single-partition topic of
// sluice (control, status, DLQ) has been created with more partitions:
// sluice reads such topics in order from one partition and would otherwise
// silently miss records written to the others.
var ErrPartitionCount = errors.New("topic must have exactly one partition")
