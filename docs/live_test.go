package docs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/docs"
	"github.com/sluicehq/sluice/internal/testenv"
)

// TestContractAgainstLiveServer starts the real sluice (built from this
// tree) on the local stack — an ingest, an applier, and a second ingest
// whose broker does not answer — and checks the document against their
// live answers with kin-openapi's openapi3filter: every request (conforms
// to the contract, or is refused by it, as the test expects) and every
// answer (its status must be one the operation names, its headers and body
// must match). It ends by checking that every status code the document
// names for every operation was met live, so that a status, a field or a
// header changed in the code alone, or in the document alone, fails here.
func TestContractAgainstLiveServer(t *testing.T) {
	broker := testenv.Require(t, "SLUICE_TEST_KAFKA")
	dsnA, dsnB := testenv.Database(t), testenv.Database(t)
	testenv.RefusePoison(t, dsnA) // a poison event is dead-lettered by target a
	bin := buildSluice(t)
	id := testenv.ID()
	dir := t.TempDir()
	topic := "sluice.test." + id
	targetA, targetB, targetGone := "a-"+id, "b-"+id, "gone-"+id
	keys := map[string]string{}
	for _, name := range []string{"publisher", "flood", "roller", "partner"} {
		keys[name] = fmt.Sprintf("contract-%s-%s-0123456789", name, id)
	}
	adminToken := "contract-admin-" + id + "-0123456789"
	client := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 20 * time.Second}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic, "sluice.dlq." + targetA}})
	})

	applierAt := testenv.FreeAddr(t)
	config := func(brokers, extra string) string {
		return fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  partitions: 1
  retention: 1h
ingest:
  keys:
    - {name: publisher, key: %q}
    - {name: flood, key: %q}
    - {name: roller, key: %q}
    - {name: partner, key: %q, sources: ["//partner/"], types: ["com.partner.*"]}
  admin_token: %q
  max_body_bytes: 4096
  max_events: 10
  rate_per_key: 1
  drain_delay: 100ms
%s
apply:
  batch_size: 50
  linger: 10ms
  retry_max: 1s
targets:
  - {name: %s, dsn: %q, schema_version: 3, listen: %q}
  - {name: %s, dsn: %q, schema_version: 3}
  - {name: %s, dsn: "postgres://sluice:none@127.0.0.1:1/none?connect_timeout=2", schema_version: 3}
log: {level: info}
`, brokers, topic, keys["publisher"], keys["flood"], keys["roller"], keys["partner"], adminToken, extra,
			targetA, dsnA, applierAt, targetB, dsnB, targetGone)
	}
	mainConfig := writeConfig(t, dir, "sluice.yaml", config(broker, ""))
	// The second ingest's broker refuses connections; it serves one request at once.
	downConfig := writeConfig(t, dir, "down.yaml", config("127.0.0.1:1", "  max_in_flight: 1\n  write_timeout: 1s"))

	pubAt, adminAt := testenv.FreeAddr(t), testenv.FreeAddr(t)
	downPubAt, downAdminAt := testenv.FreeAddr(t), testenv.FreeAddr(t)
	ingest := start(t, bin, dir, "ingest", "ingest", "--config", mainConfig, "--listen", pubAt, "--admin-listen", adminAt)
	waitFor(t, ingest, "http://"+adminAt+"/readyz", 60*time.Second)
	applier := start(t, bin, dir, "apply", "apply", "--config", mainConfig, "--target", targetA, "--listen", applierAt)
	waitFor(t, applier, "http://"+applierAt+"/readyz", 60*time.Second)
	down := start(t, bin, dir, "ingest-down", "ingest", "--config", downConfig, "--listen", downPubAt, "--admin-listen", downAdminAt)
	waitFor(t, down, "http://"+downAdminAt+"/healthz", 30*time.Second)

	// The contracts are the documents the listeners serve: the public
	// listener's part for the public listeners, the whole for the others.
	listeners := map[string][]string{"public": {pubAt, downPubAt}, "admin": {adminAt, downAdminAt}, "applier": {applierAt}}
	servedPublic := get(t, "http://"+pubAt+"/openapi.yaml")
	servedWhole := get(t, "http://"+adminAt+"/openapi.yaml")
	if want, err := docs.PublicOpenAPI(); err != nil || string(servedPublic) != string(want) {
		t.Fatalf("the public listener serves another document than the public view (%v)", err)
	}
	if onDisk, _ := os.ReadFile("openapi.yaml"); string(servedWhole) != string(onDisk) {
		t.Fatal("the admin listener serves another document than docs/openapi.yaml")
	}
	pub := loadContract(t, servedPublic, listeners)
	whole := loadContract(t, servedWhole, listeners)
	var cov coverage

	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	bearer := func(key string, kv ...string) http.Header {
		return h(append([]string{"Authorization", "Bearer " + key}, kv...)...)
	}
	const ce, batch = "application/cloudevents+json", "application/cloudevents-batch+json"
	event := func(source, id string) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":%q,"type":"com.example.thing","subject":"s-%s","time":"2026-05-09T14:07:00Z","data":{"n":1}}`, id, source, id)
	}
	events := func(n int, source string) []byte {
		var parts []string
		for i := range n {
			parts = append(parts, event(source, fmt.Sprintf("%s-%d", testenv.ID(), i)))
		}
		return []byte("[" + strings.Join(parts, ",") + "]")
	}
	src := "//contract/" + id

	t.Run("probes and documents", func(t *testing.T) {
		for _, at := range []string{pubAt, adminAt, applierAt} {
			c := whole
			if at == pubAt {
				c = pub
			}
			for _, path := range []string{"/healthz", "/readyz"} {
				cov.do(t, exchange{name: path + " at " + at, c: c, addr: at, method: "GET", path: path, status: 200, conforms: true})
			}
		}
		for _, at := range []string{adminAt, applierAt} {
			cov.do(t, exchange{name: "metrics", c: whole, addr: at, method: "GET", path: "/metrics", status: 200, conforms: true})
		}
		cov.do(t, exchange{name: "the public document", c: pub, addr: pubAt, method: "GET", path: "/openapi.yaml", status: 200, conforms: true})
		cov.do(t, exchange{name: "the whole document", c: whole, addr: adminAt, method: "GET", path: "/openapi.yaml", status: 200, conforms: true})
		for _, at := range []string{downPubAt, downAdminAt} { // its broker does not answer
			cov.do(t, exchange{name: "not ready", c: whole, addr: at, method: "GET", path: "/readyz", status: 503, conforms: true})
		}
	})

	t.Run("publishing", func(t *testing.T) {
		post := func(name string, header http.Header, body string, status int, conforms bool) answer {
			return cov.do(t, exchange{name: name, c: pub, addr: pubAt, method: "POST", path: "/v1/events", header: header,
				body: []byte(body), status: status, conforms: conforms})
		}
		a := post("structured", bearer(keys["publisher"], "Content-Type", ce, "X-Request-Id", "contract-"+id), event(src, "one"), 202, true)
		if got := a.header.Get("X-Request-Id"); got != "contract-"+id {
			t.Errorf("X-Request-Id %q, want the request's", got)
		}
		post("batch", bearer(keys["publisher"], "Content-Type", batch), string(events(2, src)), 202, true)
		post("empty batch", bearer(keys["publisher"], "Content-Type", batch), "[]", 202, true)
		post("application/json", bearer(keys["publisher"], "Content-Type", "application/json", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
			event(src, "json"), 202, true)
		post("binary, JSON data", bearer(keys["publisher"], "Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", "binary-json",
			"ce-source", src, "ce-type", "com.example.reading"), `{"celsius":21.5}`, 202, true)
		post("binary, other data", bearer(keys["publisher"], "Content-Type", "text/plain", "ce-specversion", "1.0", "ce-id", "binary-text",
			"ce-source", src, "ce-type", "com.example.note"), "plain text", 202, true)
		cov.do(t, exchange{name: "gzip", c: pub, addr: pubAt, method: "POST", path: "/v1/events", header: bearer(keys["publisher"], "Content-Type", ce),
			body: []byte(event(src, "gzip")), gzip: true, status: 202, conforms: true})

		post("malformed body", bearer(keys["publisher"], "Content-Type", ce), `{"specversion":`, 400, false)
		a = post("an invalid event", bearer(keys["publisher"], "Content-Type", batch),
			`[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"specversion":"1.0","source":"s","type":"t"}]`, 400, false)
		if !strings.Contains(string(a.body), `"index":1`) {
			t.Errorf("the 400 does not name event 1: %s", a.body)
		}
		post("binary without ce-id", bearer(keys["publisher"], "Content-Type", "text/plain", "ce-specversion", "1.0", "ce-source", src, "ce-type", "t"),
			"x", 400, true) // the contract cannot say that ce-id is required in binary mode only
		post("no key", h("Content-Type", ce), event(src, "nokey"), 401, false)
		post("a wrong key", bearer("not-a-key-0123456789", "Content-Type", ce), event(src, "wrongkey"), 401, true)
		post("out of the key's scope", bearer(keys["partner"], "Content-Type", ce), event("//shop/eu", "scope"), 403, true)
		post("a body over max_body_bytes", bearer(keys["publisher"], "Content-Type", ce),
			fmt.Sprintf(`{"specversion":"1.0","id":"big","source":"s","type":"t","data":%q}`, strings.Repeat("x", 5000)), 413, true)
		post("more than max_events", bearer(keys["publisher"], "Content-Type", batch), string(events(11, src)), 413, true)
		post("an unsupported media type", bearer(keys["publisher"], "Content-Type", "text/plain"), "hello", 415, true)
		a = post("an unsupported content coding", bearer(keys["publisher"], "Content-Type", ce, "Content-Encoding", "br"), event(src, "br"), 415, false)
		if a.header.Get("Accept-Encoding") != "gzip" {
			t.Errorf("a 415 for Content-Encoding without Accept-Encoding: gzip: %v", a.header)
		}
		post("the key's burst", bearer(keys["flood"], "Content-Type", batch), string(events(10, src)), 202, true)
		post("over rate_per_key", bearer(keys["flood"], "Content-Type", batch), string(events(10, src)), 429, true)
	})

	t.Run("publishing while Kafka cannot take a write", func(t *testing.T) {
		cov.do(t, exchange{name: "kafka down", c: pub, addr: downPubAt, method: "POST", path: "/v1/events",
			header: bearer(keys["publisher"], "Content-Type", ce), body: []byte(event(src, "down")), status: 503, conforms: true})
		// One request holds the one slot of max_in_flight, its body never
		// finishing; the next one is turned away once its key is read (a
		// request without a valid key never takes a slot).
		hold, err := net.Dial("tcp", downPubAt)
		if err != nil {
			t.Fatal(err)
		}
		defer hold.Close()
		fmt.Fprintf(hold, "POST /v1/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: 200\r\n\r\n{",
			downPubAt, keys["publisher"], ce)
		deadline := time.Now().Add(10 * time.Second)
		held := func() bool {
			req, _ := http.NewRequest("POST", "http://"+downPubAt+"/v1/events", strings.NewReader(event(src, "probe")))
			req.Header.Set("Authorization", "Bearer "+keys["publisher"])
			req.Header.Set("Content-Type", ce)
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode == 503
		}
		for !held() {
			if time.Now().After(deadline) {
				t.Fatal("the held request never filled max_in_flight")
			}
			time.Sleep(20 * time.Millisecond)
		}
		a := cov.do(t, exchange{name: "max_in_flight", c: pub, addr: downPubAt, method: "POST", path: "/v1/events",
			header: bearer(keys["publisher"], "Content-Type", ce), body: []byte(event(src, "inflight")), status: 503, conforms: true})
		if !strings.Contains(string(a.body), "limit of 1 requests") {
			t.Errorf("the 503 is not max_in_flight's: %s", a.body)
		}
	})

	t.Run("routes that are not there", func(t *testing.T) {
		for _, ex := range []exchange{
			{c: pub, addr: pubAt, method: "GET", path: "/v1/events", status: 405},
			{c: pub, addr: pubAt, method: "POST", path: "/healthz", status: 405},
			{c: pub, addr: pubAt, method: "GET", path: "/nope", status: 404},
			{c: pub, addr: pubAt, method: "GET", path: "/metrics", status: 404},
			{c: pub, addr: pubAt, method: "GET", path: "/v1/admin/targets", header: bearer(adminToken), status: 404},
			{c: pub, addr: pubAt, method: "GET", path: "/ui/", status: 404},
			{c: whole, addr: adminAt, method: "POST", path: "/v1/events", header: bearer(keys["publisher"], "Content-Type", ce), body: []byte(event(src, "x")), status: 404},
			{c: whole, addr: adminAt, method: "GET", path: "/v1/admin/nope", header: bearer(adminToken), status: 404},
			{c: whole, addr: adminAt, method: "DELETE", path: "/v1/admin/targets", header: bearer(adminToken), status: 405},
			{c: whole, addr: adminAt, method: "POST", path: "/metrics", status: 405},
			{c: whole, addr: applierAt, method: "GET", path: "/v1/admin/targets", status: 404},
		} {
			ex.name = fmt.Sprintf("%s %s at %s", ex.method, ex.path, ex.addr)
			a := cov.do(t, ex)
			if ex.status == 405 && a.header.Get("Allow") == "" {
				t.Errorf("%s: a 405 without Allow", ex.name)
			}
		}
	})

	// adminHeader is what an operator's request carries: the admin token,
	// and the media type of a body.
	adminHeader := func(body string) http.Header {
		if body == "" {
			return bearer(adminToken)
		}
		return bearer(adminToken, "Content-Type", "application/json")
	}
	admin := func(name, method, path, body string, status int) answer {
		t.Helper()
		return cov.do(t, exchange{name: name, c: whole, addr: adminAt, method: method, path: path, header: adminHeader(body),
			body: []byte(body), status: status, conforms: true})
	}
	t.Run("admin API", func(t *testing.T) {
		ops := []struct{ method, path, body string }{
			{"GET", "/v1/admin/targets", ""},
			{"POST", "/v1/admin/targets/" + targetB + "/pause", ""},
			{"POST", "/v1/admin/targets/" + targetB + "/resume", ""},
			{"POST", "/v1/admin/targets/" + targetB + "/rewind", `{"to_offset":"earliest"}`},
			{"GET", "/v1/admin/targets/" + targetB + "/dlq", ""},
			{"POST", "/v1/admin/targets/" + targetB + "/dlq/replay", ""},
			{"GET", "/v1/admin/verify?a=" + targetA + "&b=" + targetB, ""},
		}
		for _, op := range ops {
			cov.do(t, exchange{name: "no admin token", c: whole, addr: adminAt, method: op.method, path: op.path, body: []byte(op.body), status: 401})
			if op.method == "GET" {
				cov.do(t, exchange{name: "an ingest key as admin token", c: whole, addr: adminAt, method: op.method, path: op.path,
					header: bearer(keys["publisher"]), status: 401, conforms: true})
			}
			if strings.Contains(op.path, targetB) {
				admin("an unknown target", op.method, strings.Replace(op.path, targetB, "nope", 1), op.body, 404)
			}
		}
		admin("verify an unknown target", "GET", "/v1/admin/verify?a=nope&b="+targetB, "", 404)

		admin("pause", "POST", "/v1/admin/targets/"+targetB+"/pause", "", 200)
		if a := admin("pause again", "POST", "/v1/admin/targets/"+targetB+"/pause", "", 200); !strings.Contains(string(a.body), `"changed":false`) {
			t.Errorf("pausing a paused target: %s", a.body)
		}
		admin("resume", "POST", "/v1/admin/targets/"+targetB+"/resume", "", 200)
		admin("resume again", "POST", "/v1/admin/targets/"+targetB+"/resume", "", 200)
		admin("rewind to the earliest", "POST", "/v1/admin/targets/"+targetB+"/rewind", `{"to_offset":"earliest"}`, 200)
		admin("rewind to a time", "POST", "/v1/admin/targets/"+targetB+"/rewind",
			fmt.Sprintf(`{"to_time":%q}`, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)), 200)
		for _, body := range []string{`{"to_offset":"yesterday"}`, `{"to_offset":"earliest","to_time":"2026-01-01T00:00:00Z"}`, `not json`} {
			cov.do(t, exchange{name: "a malformed rewind: " + body, c: whole, addr: adminAt, method: "POST", path: "/v1/admin/targets/" + targetB + "/rewind",
				header: adminHeader(body), body: []byte(body), status: 400})
		}

		// A poison event: target a's applier dead-letters it.
		cov.do(t, exchange{name: "a poison event", c: pub, addr: pubAt, method: "POST", path: "/v1/events",
			header: bearer(keys["publisher"], "Content-Type", ce), body: testenv.Poison(src, "poison"), status: 202, conforms: true})
		dlq := "/v1/admin/targets/" + targetA + "/dlq"
		deadline := time.Now().Add(60 * time.Second)
		for {
			var letters []map[string]any
			_ = json.Unmarshal(getWith(t, "http://"+adminAt+dlq, adminToken), &letters)
			if len(letters) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the poison event never reached target a's DLQ")
			}
			time.Sleep(200 * time.Millisecond)
		}
		admin("dead letters", "GET", dlq, "", 200)
		admin("every dead letter", "GET", dlq+"?all=1", "", 200)
		if a := admin("no dead letters", "GET", "/v1/admin/targets/"+targetB+"/dlq", "", 200); strings.TrimSpace(string(a.body)) != "[]" {
			t.Errorf("target b's DLQ: %s", a.body)
		}
		if a := admin("replay what still fails", "POST", dlq+"/replay", "", 200); !strings.Contains(string(a.body), "poison") {
			t.Errorf("the replay does not name the poison event as still failing: %s", a.body)
		}
		admin("replay nothing", "POST", "/v1/admin/targets/"+targetB+"/dlq/replay", "", 200)

		// Target a's applier reports; the status lists it.
		deadline = time.Now().Add(30 * time.Second)
		for !strings.Contains(string(getWith(t, "http://"+adminAt+"/v1/admin/targets", adminToken)), `"replica"`) {
			if time.Now().After(deadline) {
				t.Fatal("target a's applier never reported")
			}
			time.Sleep(200 * time.Millisecond)
		}
		admin("status", "GET", "/v1/admin/targets", "", 200)

		admin("verify", "GET", "/v1/admin/verify?a="+targetA+"&b="+targetB+"&keys=5&bucket=1h", "", 200)
		admin("verify a window", "GET", "/v1/admin/verify?a="+targetA+"&b="+targetB+"&from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z", "", 200)
		for _, q := range []string{"&bucket=soon", "&keys=-1", "&from=yesterday"} {
			cov.do(t, exchange{name: "a malformed verify: " + q, c: whole, addr: adminAt, method: "GET",
				path: "/v1/admin/verify?a=" + targetA + "&b=" + targetB + q, header: bearer(adminToken), status: 400})
		}

		// Target gone's database refuses connections.
		admin("dead letters of a target that cannot be asked", "GET", "/v1/admin/targets/"+targetGone+"/dlq", "", 502)
		admin("replay to a target that cannot be asked", "POST", "/v1/admin/targets/"+targetGone+"/dlq/replay", "", 502)
		admin("verify a target that cannot be asked", "GET", "/v1/admin/verify?a="+targetA+"&b="+targetGone, "", 502)
	})

	t.Run("admin API while Kafka cannot be asked", func(t *testing.T) {
		for _, op := range []struct{ method, path, body string }{
			{"GET", "/v1/admin/targets", ""},
			{"POST", "/v1/admin/targets/" + targetB + "/pause", ""},
			{"POST", "/v1/admin/targets/" + targetB + "/resume", ""},
			{"POST", "/v1/admin/targets/" + targetB + "/rewind", `{"to_offset":"earliest"}`},
		} {
			cov.do(t, exchange{name: "kafka down", c: whole, addr: downAdminAt, method: op.method, path: op.path, header: adminHeader(op.body),
				body: []byte(op.body), status: 502, conforms: true})
		}
	})

	t.Run("two operators at once", func(t *testing.T) {
		// Operators' changes are conditional on the state they read: of
		// requests that race, one wins and the others are told (409).
		race := func(op, body, before string) {
			for round := range 10 {
				if before != "" {
					admin("before the race", "POST", "/v1/admin/targets/"+targetB+"/"+before, "", 200)
				}
				ex := exchange{name: fmt.Sprintf("%s, racing (round %d)", op, round), c: whole, addr: adminAt, method: "POST",
					path: "/v1/admin/targets/" + targetB + "/" + op, header: adminHeader(body), body: []byte(body), conforms: true}
				answers, headers, errs := make([]answer, 3), make([]http.Header, 3), make([]error, 3)
				var wg sync.WaitGroup
				for i := range answers {
					wg.Go(func() { answers[i], headers[i], errs[i] = send(ex) })
				}
				wg.Wait()
				codes := make([]int, len(answers))
				for i, a := range answers {
					if errs[i] != nil {
						t.Fatalf("%s: %v", ex.name, errs[i])
					}
					cov.check(t, ex, headers[i], a) // 200 or 409: whichever, as the contract has it
					if codes[i] = a.status; a.status != 200 && a.status != 409 {
						t.Errorf("%s: %d, want 200 or 409", ex.name, a.status)
					}
				}
				if strings.Contains(fmt.Sprint(codes), "409") {
					return
				}
			}
			t.Errorf("%s: no 409 in 10 rounds of 3 racing requests", op)
		}
		race("pause", "", "resume")
		race("resume", "", "pause")
		race("rewind", `{"to_offset":"earliest"}`, "")
	})

	t.Run("rewind before retention", func(t *testing.T) {
		// Retention deletes the topic's first records...
		ctx := context.Background()
		_, err := client.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, Configs: []kafka.IncrementalAlterConfigsRequestConfig{
				{Name: "retention.ms", Value: "1000", ConfigOperation: kafka.ConfigOperationSet},
				{Name: "segment.ms", Value: "100", ConfigOperation: kafka.ConfigOperationSet},
			}}}})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(45 * time.Second)
		for logStart(t, client, topic) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("retention deleted nothing in 45s")
			}
			// A new record rolls the segment that retention may delete.
			postEvent(t, pubAt, keys["roller"], event(src, "roll-"+testenv.ID()))
			time.Sleep(time.Second)
		}
		// ...so offset 0 is gone.
		admin("rewind to an offset retention deleted", "POST", "/v1/admin/targets/"+targetB+"/rewind", `{"to_offset":"0"}`, 422)
	})

	t.Run("the status page", func(t *testing.T) {
		cov.do(t, exchange{name: "/ui", c: whole, addr: adminAt, method: "GET", path: "/ui", status: 302, conforms: true})
		cov.do(t, exchange{name: "/ui/", c: whole, addr: adminAt, method: "GET", path: "/ui/", status: 200, conforms: true})
		for _, f := range []string{"app.js", "style.css"} {
			cov.do(t, exchange{name: f, c: whole, addr: adminAt, method: "GET", path: "/ui/" + f, status: 200, conforms: true})
		}
		cov.do(t, exchange{name: "no such file", c: whole, addr: adminAt, method: "GET", path: "/ui/nope.js", status: 404, conforms: true})
	})

	if missing := cov.missing(whole.doc, map[string]string{
		"POST /v1/events 408": "TestRequestTimeoutAnswer: the public listener's read timeout is 30 s",
	}); len(missing) > 0 {
		t.Errorf("status codes the document names that no live answer was checked against:\n  %s", strings.Join(missing, "\n  "))
	}
	for _, code := range []int{404, 405} {
		if !cov.seen[opKey("(unrouted)", "GET", code)] && !cov.seen[opKey("(unrouted)", "POST", code)] {
			t.Errorf("no live %d was checked against the document's answer to an unknown route", code)
		}
	}
	for _, p := range []*proc{ingest, applier, down} {
		if !p.running() {
			t.Errorf("%s exited during the test", p.name)
		}
	}
}

// buildSluice builds the binary under test from this tree.
func buildSluice(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	build := exec.Command("go", "build", "-o", bin, "github.com/sluicehq/sluice/cmd/sluice")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sluice: %v\n%s", err, out)
	}
	return bin
}

func writeConfig(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// proc is a sluice process the test started; its log is shown when the
// test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func start(t *testing.T, bin, dir, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), "SLUICE_CONFIG=")
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("---- %s log (last 30 lines)\n%s", name, tail(string(b), 30))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitFor polls url until it answers 200.
func waitFor(t *testing.T, p *proc, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !p.running() {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited:\n%s", p.name, tail(string(b), 30))
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %s did not answer 200 within %v", p.name, url, timeout)
}

func get(t *testing.T, url string) []byte { return getWith(t, url, "") }

func getWith(t *testing.T, url, token string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return readAll(t, resp)
}

// status sends a request without a body or a key and returns the status.
func status(t *testing.T, method, url string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func postEvent(t *testing.T, addr, key, event string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/events", strings.NewReader(event))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 && resp.StatusCode != 429 {
		t.Fatalf("publishing: %d", resp.StatusCode)
	}
}

func logStart(t *testing.T, client *kafka.Client, topic string) int64 {
	t.Helper()
	resp, err := client.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
		return p.FirstOffset
	}
	t.Fatalf("no partition 0 in %s", topic)
	return 0
}
