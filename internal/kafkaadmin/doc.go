// Package kafkaadmin is the one place where sluice builds Kafka clients: the
// transport and dialer every reader, writer, consumer group and admin call
// shares, the topics sluice needs (their names, partition counts and
// configs), and the admin questions the rest of sluice asks the cluster: log
// bounds, the time of the record at an offset, a topic's retention, a
// group's committed offsets, and reading a small topic to its end.
//
// Nothing above this package constructs a kafka.Transport, kafka.Dialer,
// kafka.Client, kafka.Reader, kafka.Writer or kafka.ConsumerGroup itself, so
// connection settings (and, later, TLS and SASL) are decided once.
//
//	cluster := kafkaadmin.New(kafkaadmin.Config{Brokers: brokers})
//	defer cluster.Close()
//	err := cluster.EnsureTopics(ctx, 1, kafkaadmin.ControlTopicSpec())
//	starts, ends, err := cluster.LogBounds(ctx, kafkaadmin.EventsTopic)
package kafkaadmin
