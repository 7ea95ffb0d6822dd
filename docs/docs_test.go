package docs_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/docs"
	"github.com/sluicehq/sluice/producer"
)

// TestDocumentIsValidOpenAPI31 loads the embedded document with kin-openapi
// and validates it as OpenAPI 3.1; it is the file in this directory.
func TestDocumentIsValidOpenAPI31(t *testing.T) {
	onDisk, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != string(docs.OpenAPI()) {
		t.Fatal("the embedded document is not docs/openapi.yaml")
	}
	c := loadContract(t, docs.OpenAPI(), map[string][]string{"public": {"127.0.0.1:8080"}, "admin": {"127.0.0.1:8081"}, "applier": {"127.0.0.1:9101"}})
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" || len(op.Tags) == 0 {
				t.Errorf("%s %s: give it an operationId and a tag", method, path)
			}
			for code, r := range op.Responses.Map() {
				if code >= "400" && !(path == "/ui/{asset}" && code == "404") {
					if r.Value.Content.Get("application/json") == nil {
						t.Errorf("%s %s %s: an error answer is JSON", method, path, code)
					}
				}
			}
		}
	}
}

// TestPublicViewHasNothingOfTheAdminListener: the public listener's part of
// the document is valid OpenAPI 3.1, has its paths and only them, and no
// server, security scheme or schema of the admin API.
func TestPublicViewHasNothingOfTheAdminListener(t *testing.T) {
	raw, err := docs.PublicOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	public := loadContract(t, raw, map[string][]string{"public": {"127.0.0.1:8080"}})
	var paths []string
	for path := range public.doc.Paths.Map() {
		paths = append(paths, path)
	}
	slices.Sort(paths)
	if want := []string{"/healthz", "/openapi.yaml", "/readyz", "/v1/events"}; !slices.Equal(paths, want) {
		t.Errorf("the public view's paths are %v, want %v", paths, want)
	}
	for _, word := range []string{"x-sluice-listener: admin", "x-sluice-listener: applier", "adminToken", "TargetView", "/v1/admin/targets", "/metrics:"} {
		if strings.Contains(string(raw), word) {
			t.Errorf("the public view holds %q", word)
		}
	}
	for _, name := range []string{"Errors", "CloudEvent", "CloudEventBatch", "Accepted"} {
		if public.doc.Components.Schemas[name] == nil {
			t.Errorf("the public view lacks the schema %s", name)
		}
	}
	if public.doc.Components.SecuritySchemes["ingestKey"] == nil {
		t.Error("the public view lacks the ingestKey security scheme")
	}
	// What is left is the whole document's, unchanged.
	whole := loadContract(t, docs.OpenAPI(), map[string][]string{"public": {"127.0.0.1:8080"}, "admin": {"127.0.0.1:8081"}, "applier": {"127.0.0.1:9101"}})
	for _, path := range paths {
		got, want := public.doc.Paths.Value(path).Operations(), whole.doc.Paths.Value(path).Operations()
		if len(got) != len(want) {
			t.Errorf("%s: %d operations in the public view, %d in the document", path, len(got), len(want))
		}
		for method, op := range want {
			if got[method] == nil || got[method].OperationID != op.OperationID || got[method].Responses.Len() != op.Responses.Len() {
				t.Errorf("%s %s differs in the public view", method, path)
			}
		}
	}
}

func TestViewRefusesAListenerWithoutServer(t *testing.T) {
	if _, err := docs.View(docs.OpenAPI(), "nonesuch"); err == nil {
		t.Fatal("a view for a listener the document has no server of")
	}
}

// discard appends nothing and says so.
type discard struct{}

func (discard) WriteMessages(context.Context, ...kafka.Message) error { return nil }

// TestRequestTimeoutAnswer checks the 408 the contract names: the real
// ingest handler behind a real server whose read timeout is short, and a
// body that stops arriving. The binary's read timeout is 60 s, and with
// its write timeout (ingest.write_timeout + 10 s) shorter than that the
// 408 cannot even reach a client, so this one status is checked here and
// not against the binary.
func TestRequestTimeoutAnswer(t *testing.T) {
	const key = "contract-key-0123456789"
	h, err := producer.NewHandler(producer.Config{Keys: producer.Secrets(key)}, discard{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Config.WriteTimeout = 10 * time.Second
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	event := `{"specversion":"1.0","id":"1","source":"s","type":"t"}`
	fmt.Fprintf(conn, "POST /v1/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/cloudevents+json\r\nContent-Length: %d\r\n\r\n%s",
		addr, key, len(event), event[:10]) // the rest never comes
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := readAll(t, resp)

	whole := loadContract(t, docs.OpenAPI(), map[string][]string{"public": {addr}, "admin": {"127.0.0.1:1"}, "applier": {"127.0.0.1:1"}})
	var cov coverage
	header := http.Header{"Authorization": {"Bearer " + key}, "Content-Type": {"application/cloudevents+json"}}
	ex := exchange{name: "a body that stops arriving", c: whole, addr: addr, method: http.MethodPost, path: "/v1/events",
		header: header, body: []byte(event), status: http.StatusRequestTimeout, conforms: true}
	if resp.StatusCode != ex.status {
		t.Fatalf("answered %d, want %d: %s", resp.StatusCode, ex.status, body)
	}
	cov.validate(t, ex, header, answer{status: resp.StatusCode, header: resp.Header, body: body})
	if !cov.seen[opKey("/v1/events", http.MethodPost, http.StatusRequestTimeout)] {
		t.Fatal("the 408 was not checked against POST /v1/events")
	}
}
