package main

import (
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/operations"
)

// cluster is the configured Kafka cluster; every Kafka client of the
// process is built from it.
func (c *config) cluster(log *slog.Logger) *kafkaadmin.Cluster {
	return kafkaadmin.New(kafkaadmin.Config{Brokers: c.Kafka.Brokers, Logger: log, TLS: c.Kafka.tls, SASL: c.Kafka.sasl})
}

// eventsTopic is the configured events topic.
func (c *config) eventsTopic() kafkaadmin.TopicSpec {
	return kafkaadmin.EventsTopicSpec(c.Kafka.Topic, c.Kafka.Partitions, time.Duration(c.Kafka.Retention))
}

// operations returns the operator's view of the configured deployment.
func (c *config) operations(cluster *kafkaadmin.Cluster) (*operations.Ops, error) {
	targets := make([]operations.Target, len(c.Targets))
	for i, t := range c.Targets {
		defs, err := c.projections(t)
		if err != nil {
			return nil, err
		}
		ps, err := targetdb.CompileProjections(defs, nil)
		if err != nil {
			return nil, configErr("targets[%s]: %v", t.Name, err)
		}
		facts, err := c.facts(t)
		if err != nil {
			return nil, err
		}
		targets[i] = operations.Target{Name: t.Name, DSN: t.DSN, Projections: ps, Facts: facts}
	}
	return operations.New(operations.Config{Cluster: cluster, EventsTopic: c.Kafka.Topic, Targets: targets}), nil
}
