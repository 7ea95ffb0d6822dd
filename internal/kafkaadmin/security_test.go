package kafkaadmin_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/testenv"
)

// TestEveryClientGoesThroughTLSAndSASLPlain: the probe, topic creation, a
// writer and a reader built from one Cluster all reach the broker's
// SASL_SSL listener with PLAIN; a wrong password and a wrong CA are refused
// (so the settings are really used).
func TestEveryClientGoesThroughTLSAndSASLPlain(t *testing.T) {
	addr := testenv.Require(t, "SLUICE_TEST_KAFKA_SASL_SSL")
	caFile := testenv.Require(t, "SLUICE_TEST_TLS_CA")
	user, password := testenv.Require(t, "SLUICE_TEST_KAFKA_SASL_USER"), testenv.Require(t, "SLUICE_TEST_KAFKA_SASL_PASSWORD")
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c := kafkaadmin.New(kafkaadmin.Config{Brokers: []string{addr}, TLS: &tls.Config{RootCAs: pool},
		SASL: plain.Mechanism{Username: user, Password: password}})
	defer c.Close()
	if err := c.Probe(ctx); err != nil {
		t.Fatalf("probe over SASL_SSL: %v", err)
	}
	name := "sluice.test.secure." + testenv.ID()
	if err := c.EnsureTopics(ctx, 1, kafkaadmin.TopicSpec{Name: name, Partitions: 1}); err != nil {
		t.Fatalf("create a topic over SASL_SSL: %v", err)
	}
	w := c.NewWriter(kafkaadmin.WriterConfig{Topic: name})
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("secret")}); err != nil {
		t.Fatalf("write over SASL_SSL: %v", err)
	}
	r := c.NewReader(kafkaadmin.ReaderConfig{Topic: name})
	defer r.Close()
	m, err := r.ReadMessage(ctx)
	if err != nil || string(m.Value) != "secret" {
		t.Fatalf("read over SASL_SSL: %q %v", m.Value, err)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShort()
	wrongPassword := kafkaadmin.New(kafkaadmin.Config{Brokers: []string{addr}, TLS: &tls.Config{RootCAs: pool},
		SASL: plain.Mechanism{Username: user, Password: password + "x"}})
	if err := wrongPassword.Probe(short); err == nil || !strings.Contains(err.Error(), "SASL") {
		t.Fatalf("a wrong password: %v, want a SASL authentication error", err)
	}
	wrongCA := kafkaadmin.New(kafkaadmin.Config{Brokers: []string{addr}, TLS: &tls.Config{},
		SASL: plain.Mechanism{Username: user, Password: password}})
	if err := wrongCA.Probe(short); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an unknown CA: %v, want a certificate error", err)
	}
}
