package docs_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/sluicehq/sluice/docs"
)

// contract is an OpenAPI document whose servers point at live listeners,
// and the kin-openapi router over it.
type contract struct {
	doc    *openapi3.T
	router routers.Router
}

// nowhere is the server a path gets when none of its listeners is running:
// no request matches it.
const nowhere = "http://nowhere.invalid"

// loadContract loads and validates an OpenAPI 3.1 document, then points each
// of its Server Objects at the addresses of the listener it is marked with
// (x-sluice-listener): a Server Object per address.
func loadContract(t *testing.T, raw []byte, listeners map[string][]string) *contract {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		t.Fatalf("load the document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("the document is OpenAPI %s: the check is written for 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	point := func(servers openapi3.Servers) openapi3.Servers {
		var out openapi3.Servers
		for _, s := range servers {
			listener, _ := s.Extensions[docs.ListenerExtension].(string)
			if listener == "" {
				t.Fatalf("server %s is not marked with %s", s.URL, docs.ListenerExtension)
			}
			for _, addr := range listeners[listener] {
				live := *s
				live.URL = "http://" + addr
				out = append(out, &live)
			}
		}
		if len(out) == 0 {
			out = openapi3.Servers{{URL: nowhere}}
		}
		return out
	}
	doc.Servers = point(doc.Servers)
	for _, item := range doc.Paths.Map() {
		if len(item.Servers) > 0 {
			item.Servers = point(item.Servers)
		}
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{doc: doc, router: router}
}

// exchange is one request to a live listener, the answer the test expects,
// and whether the request conforms to the contract.
type exchange struct {
	name   string
	c      *contract
	addr   string
	method string
	path   string // with the query
	header http.Header
	body   []byte
	// gzip sends the body gzip-compressed with Content-Encoding: gzip; the
	// validator is given it decompressed (the representation, before the
	// content coding).
	gzip bool
	// status is the answer the test expects.
	status int
	// conforms says whether the request conforms to the contract: a
	// request the contract refuses must be refused by the validator, one it
	// allows allowed. A request to a route the contract does not have never
	// conforms.
	conforms bool
}

// answer is what a listener answered.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// coverage records, per documented operation, the status codes a live
// answer validated against.
type coverage struct {
	mu   sync.Mutex
	seen map[string]bool
}

func opKey(path, method string, status int) string {
	return fmt.Sprintf("%s %s %d", method, path, status)
}

func (c *coverage) add(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	c.seen[key] = true
}

// missing lists the status codes doc names, per operation, that no live
// answer was checked against, but for those in exempt.
func (c *coverage) missing(doc *openapi3.T, exempt map[string]string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				key := fmt.Sprintf("%s %s %s", method, path, code)
				if !c.seen[key] && exempt[key] == "" {
					out = append(out, key)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

var httpClient = &http.Client{
	Timeout: 3 * time.Minute,
	// The redirect of /ui is an answer of its own.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// bearerPresent is the validator's authentication: the security schemes of the
// document are HTTP bearer tokens, which the request must carry. Whether
// the token is right is the server's to say, not the contract's.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "http" || !strings.EqualFold(s.Scheme, "bearer") {
		return fmt.Errorf("security scheme %s is %s %s, not an HTTP bearer token", in.SecuritySchemeName, s.Type, s.Scheme)
	}
	scheme, token, _ := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errors.New("no Authorization: Bearer token")
	}
	return nil
}

// do sends the exchange's request, checks its status, then validates the
// request and the answer against the contract with openapi3filter, and
// records the operation's status as covered. It returns the answer.
func (cov *coverage) do(t *testing.T, ex exchange) answer {
	t.Helper()
	a, header, err := send(ex)
	if err != nil {
		t.Fatalf("%s: %v", ex.name, err)
	}
	cov.check(t, ex, header, a)
	return a
}

// check checks an answer to the exchange: its status (unless the exchange
// expects none in particular, status 0), then the contract.
func (cov *coverage) check(t *testing.T, ex exchange, header http.Header, a answer) {
	t.Helper()
	if ex.status != 0 && a.status != ex.status {
		t.Errorf("%s: %s %s answered %d, want %d: %s", ex.name, ex.method, ex.path, a.status, ex.status, a.body)
	}
	cov.validate(t, ex, header, a)
}

// send sends the exchange's request; it returns the answer and the
// request's headers as sent.
func send(ex exchange) (answer, http.Header, error) {
	wire := ex.body
	header := ex.header.Clone()
	if header == nil {
		header = http.Header{}
	}
	if ex.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(ex.body)
		_ = zw.Close()
		wire = buf.Bytes()
		header.Set("Content-Encoding", "gzip")
	}
	req, err := http.NewRequest(ex.method, "http://"+ex.addr+ex.path, bytes.NewReader(wire))
	if err != nil {
		return answer{}, nil, err
	}
	req.Header = header.Clone()
	resp, err := httpClient.Do(req)
	if err != nil {
		return answer{}, nil, fmt.Errorf("%s %s: %w", ex.method, ex.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, nil, fmt.Errorf("read the answer: %w", err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body}, header, nil
}

// validate checks one exchange against its contract.
func (cov *coverage) validate(t *testing.T, ex exchange, header http.Header, a answer) {
	t.Helper()
	ctx := context.Background()
	vreq, err := http.NewRequest(ex.method, "http://"+ex.addr+ex.path, bytes.NewReader(ex.body))
	if err != nil {
		t.Fatal(err)
	}
	vreq.Header = header.Clone()
	opts := &openapi3filter.Options{AuthenticationFunc: bearerPresent, MultiError: true, IncludeResponseStatus: true}
	route, params, err := ex.c.router.FindRoute(vreq)
	var in *openapi3filter.RequestValidationInput
	switch {
	case errors.Is(err, routers.ErrPathNotFound), errors.Is(err, routers.ErrMethodNotAllowed):
		// Not a route of the contract: the answer must be one of the two
		// the document gives every such request.
		if ex.conforms {
			t.Errorf("%s: the contract has no route for %s %s (%v), but the test says the request conforms", ex.name, ex.method, ex.path, err)
		}
		responses := openapi3.NewResponses(
			openapi3.WithStatus(http.StatusNotFound, ex.c.doc.Components.Responses["NotFound"]),
			openapi3.WithStatus(http.StatusMethodNotAllowed, ex.c.doc.Components.Responses["MethodNotAllowed"]))
		route = &routers.Route{Spec: ex.c.doc, Path: vreq.URL.Path, PathItem: &openapi3.PathItem{}, Method: ex.method,
			Operation: &openapi3.Operation{Responses: responses}}
		in = &openapi3filter.RequestValidationInput{Request: vreq, Route: route, Options: opts}
		cov.add(opKey("(unrouted)", ex.method, a.status))
	case err != nil:
		t.Fatalf("%s: route %s %s: %v", ex.name, ex.method, ex.path, err)
	default:
		in = &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
		reqErr := openapi3filter.ValidateRequest(ctx, in)
		switch {
		case ex.conforms && reqErr != nil:
			t.Errorf("%s: the request should conform to the contract: %v", ex.name, reqErr)
		case !ex.conforms && reqErr == nil:
			t.Errorf("%s: the contract accepts the request %s %s, which the test says it refuses", ex.name, ex.method, ex.path)
		}
		cov.add(opKey(route.Path, ex.method, a.status))
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: a.status, Header: a.header, Options: opts}
	out.SetBodyBytes(a.body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s: %s %s: the answer %d breaks the contract: %v\nbody: %s", ex.name, ex.method, ex.path, a.status, err, a.body)
	}
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
