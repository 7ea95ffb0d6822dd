package e2e

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
)

// ensureScramUser gives the stack's SASL user a SCRAM-SHA-512 credential
// (KRaft keeps it in the metadata log; PLAIN is configured in the broker).
func ensureScramUser(t *testing.T, plaintext, user, password string) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(plaintext), Timeout: 10 * time.Second}
	salt := []byte("sluice-e2e-salt")
	const iterations = 4096
	// SCRAM's SaltedPassword: PBKDF2 of the password with the mechanism's hash.
	salted, err := pbkdf2.Key(sha512.New, password, salt, iterations, sha512.Size)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.AlterUserScramCredentials(context.Background(), &kafka.AlterUserScramCredentialsRequest{
		Upsertions: []kafka.UserScramCredentialsUpsertion{{Name: user, Mechanism: kafka.ScramMechanismSha512,
			Iterations: iterations, Salt: salt, SaltedPassword: salted}},
	})
	if err != nil {
		t.Fatalf("create the SCRAM user: %v", err)
	}
	for _, r := range resp.Results {
		if r.Error != nil {
			t.Fatalf("create the SCRAM user %s: %v", r.User, r.Error)
		}
	}
}

// TestThePipelineRunsOverTLSAndSASL runs ingest, both appliers and ctl
// against the broker's SASL_SSL listener (SCRAM-SHA-512 over TLS, the
// stack's own CA), serves ingest over TLS with client certificates
// required, and reaches both PostgreSQL clusters with sslmode=verify-full:
// every hop of an event is encrypted and authenticated, and nothing is lost.
func TestThePipelineRunsOverTLSAndSASL(t *testing.T) {
	secure := testenv.Require(t, "SLUICE_TEST_KAFKA_SASL_SSL")
	ca := testenv.Require(t, "SLUICE_TEST_TLS_CA")
	user, password := testenv.Require(t, "SLUICE_TEST_KAFKA_SASL_USER"), testenv.Require(t, "SLUICE_TEST_KAFKA_SASL_PASSWORD")
	svc := requireServices(t)
	ensureScramUser(t, svc.kafka, user, password)
	tlsDir := filepath.Dir(ca)
	cert, key := filepath.Join(tlsDir, "server.crt"), filepath.Join(tlsDir, "server.key")

	t.Setenv("SLUICE_KAFKA_SASL_PASSWORD", password) // every process takes the secret from the environment
	p := newPipeline(t, pipelineOptions{
		partitions:  3,
		brokers:     secure,
		extraKafka:  fmt.Sprintf("  tls: {ca_file: %q}\n  sasl: {mechanism: SCRAM-SHA-512, username: %q}", ca, user),
		extraIngest: fmt.Sprintf("  tls: {cert_file: %q, key_file: %q, client_ca_file: %q}", cert, key, ca),
		dsnOptions:  "sslmode=verify-full&sslrootcert=" + ca,
	})
	ingest := p.startIngest()
	a, b := p.startApply("a"), p.startApply("b")

	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	clientCert, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}}}}
	withoutCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	publish := func(c *http.Client, scheme string, ids []string) (int, error) {
		var events []string
		for _, id := range ids {
			events = append(events, fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"secure/%s","type":"t"}`, id, p.id))
		}
		req, _ := http.NewRequest(http.MethodPost, scheme+"://"+p.ingestAt+"/v1/events", strings.NewReader("["+strings.Join(events, ",")+"]"))
		req.Header.Set("Content-Type", "application/cloudevents-batch+json")
		req.Header.Set("Authorization", "Bearer "+p.key)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if _, err := publish(withoutCert, "https", []string{"x"}); err == nil {
		t.Fatal("ingest took a request without a client certificate")
	}
	if code, err := publish(http.DefaultClient, "http", []string{"x"}); err == nil && code == 202 {
		t.Fatal("ingest took a plaintext request")
	}
	const requests, perRequest = 40, 25
	for r := range requests {
		ids := make([]string, perRequest)
		for i := range ids {
			ids[i] = fmt.Sprint(r*perRequest + i)
		}
		if code, err := publish(withCert, "https", ids); err != nil || code != 202 {
			t.Fatalf("request %d over TLS: %d %v", r, code, err)
		}
	}
	source := "secure/" + p.id
	p.waitCount("a", source, requests*perRequest, time.Minute)
	p.waitCount("b", source, requests*perRequest, time.Minute)

	// ctl reaches Kafka (SASL_SSL) and both databases (verify-full) too.
	if out, err := p.ctlErr("verify", p.targets["a"], p.targets["b"]); err != nil || !strings.Contains(out, "agree") {
		t.Fatalf("ctl verify over TLS: %v\n%s", err, out)
	}
	// The sessions really are encrypted, and the secret is in no log.
	var encrypted bool
	if err := p.db("b").QueryRow(context.Background(),
		`SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1`,
		"sluice-apply-"+p.targets["b"]).Scan(&encrypted); err != nil || !encrypted {
		t.Fatalf("B's applier sessions are not all TLS: %v", err)
	}
	for _, pr := range []*proc{ingest, a.proc, b.proc} {
		logText, _ := os.ReadFile(pr.log)
		if strings.Contains(string(logText), password) {
			t.Fatalf("%s's log holds the SASL password", pr.name)
		}
	}
}
