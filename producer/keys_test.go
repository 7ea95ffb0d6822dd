package producer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

func digestOf(secret string) string {
	d := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(d[:])
}

func TestKeysRefusedAtConfiguration(t *testing.T) {
	for _, c := range []struct {
		name string
		keys []Key
		want string
	}{
		{"none", nil, "at least one key"},
		{"neither key nor digest", []Key{{Name: "a"}}, "keys[0]: a key (or its sha256) is required"},
		{"both key and digest", []Key{{Secret: testKey, SHA256: digestOf(testKey)}}, "not both"},
		{"a short key", []Key{{Secret: "short"}}, "at least 16 characters"},
		{"a digest that is not hex", []Key{{SHA256: strings.Repeat("z", 64)}}, "64 hex digits"},
		{"a short digest", []Key{{SHA256: "abcd"}}, "64 hex digits"},
		{"a name with a space", []Key{{Name: "shop backend", Secret: testKey}}, `name "shop backend"`},
		{"two keys of one name", []Key{{Name: "a", Secret: testKey}, {Name: "a", Secret: testKey + "x"}}, "keys[1]: name \"a\" is also the name of ingest.keys[0]"},
		{"one key twice, once as digest", []Key{{Secret: testKey}, {Name: "b", SHA256: digestOf(testKey)}}, "keys[1]: the same key as ingest.keys[0]"},
		{"an empty source scope", []Key{{Secret: testKey, Sources: []string{""}}}, "empty scope"},
		{"a type that allows all", []Key{{Secret: testKey, Types: []string{"*"}}}, "would allow every type"},
	} {
		_, err := NewHandler(Config{Keys: c.keys}, &recordingAppender{}, nil, nil)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig containing %q", c.name, err, c.want)
		}
	}
}

// TestAKeyGivenAsItsDigestAuthenticatesTheKey: the configuration holds no
// secret, the client sends the secret.
func TestAKeyGivenAsItsDigestAuthenticatesTheKey(t *testing.T) {
	h, _ := newTestHandler(t, &recordingAppender{}, Config{Keys: []Key{{Name: "by-digest", SHA256: strings.ToUpper(digestOf(testKey))}}})
	if rec := post(h, "application/json", "Bearer "+testKey, ev1); rec.Code != 202 {
		t.Fatalf("the key of the configured digest: %d %s", rec.Code, rec.Body)
	}
	if rec := post(h, "application/json", "Bearer "+digestOf(testKey), ev1); rec.Code != 401 {
		t.Fatalf("the digest itself sent as the key: %d, want 401", rec.Code)
	}
	if !h.HoldsKey(testKey) || h.HoldsKey(digestOf(testKey)) {
		t.Fatal("HoldsKey does not say which secret is a key")
	}
}

// TestScopedKeys: a key publishes only its sources and types; one event out
// of scope refuses the whole request with 403 naming that event, and appends
// nothing.
func TestScopedKeys(t *testing.T) {
	out := &recordingAppender{}
	h, _ := newTestHandler(t, out, Config{Keys: []Key{
		{Name: "shop", Secret: testKey, Sources: []string{"//shop/", "urn:shop:"}, Types: []string{"com.shop.order.created", "com.shop.cart.*"}},
		{Name: "any", Secret: "any-key-0123456789abc"},
	}})
	event := func(id, source, typ string) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":%q,"type":%q}`, id, source, typ)
	}
	for _, c := range []struct {
		name, key, body string
		code            int
		want            string
	}{
		{"in scope", testKey, "[" + event("1", "//shop/eu", "com.shop.order.created") + "," + event("2", "urn:shop:x", "com.shop.cart.emptied") + "]", 202, ""},
		{"a source outside", testKey, "[" + event("1", "//shop/eu", "com.shop.order.created") + "," + event("2", "//billing/eu", "com.shop.order.created") + "]", 403, `"index":1,"error":"key \"shop\" may not publish source \"//billing/eu\"`},
		{"a prefix is not a substring", testKey, event("1", "x//shop/", "com.shop.order.created"), 403, `may not publish source`},
		{"a type outside", testKey, event("1", "//shop/eu", "com.shop.order.created.v2"), 403, `may not publish type \"com.shop.order.created.v2\"`},
		{"a wildcard is a prefix, not a pattern", testKey, event("1", "//shop/eu", "com.shop.carts"), 403, `may not publish type`},
		{"an unscoped key publishes anything", "any-key-0123456789abc", event("1", "//billing/eu", "x"), 202, ""},
	} {
		before := len(out.msgs)
		rec := post(h, "application/cloudevents-batch+json", "Bearer "+c.key, c.body)
		if !strings.HasPrefix(c.body, "[") {
			rec = post(h, "application/cloudevents+json", "Bearer "+c.key, c.body)
		}
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s: %d %s, want %d containing %s", c.name, rec.Code, rec.Body, c.code, c.want)
		}
		if c.code != 202 && len(out.msgs) != before {
			t.Errorf("%s: a refused request appended %d records", c.name, len(out.msgs)-before)
		}
	}
}

// TestTheKeyNameIsRecordedNeverTheKey: logs, metrics and every record's
// sluice-key header carry the name.
func TestTheKeyNameIsRecordedNeverTheKey(t *testing.T) {
	out := &recordingAppender{}
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	h, err := NewHandler(Config{Keys: []Key{{Name: "shop-backend", Secret: testKey}, {Secret: "unnamed-key-0123456789"}}}, out, NewMetrics(reg),
		slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if rec := post(h, "application/cloudevents-batch+json", "Bearer "+testKey, "["+ev1+","+ev2+"]"); rec.Code != 202 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	post(h, "application/json", "Bearer not-a-key-0123456789", ev1)
	for _, m := range out.msgs {
		var got string
		for _, hd := range m.Headers {
			if hd.Key == KeyHeader {
				got = string(hd.Value)
			}
		}
		if got != "shop-backend" {
			t.Fatalf("record header %s = %q, want shop-backend", KeyHeader, got)
		}
	}
	if got := testutil.ToFloat64(h.metrics.events.WithLabelValues("shop-backend")); got != 2 {
		t.Fatalf("sluice_ingest_events_total{key=shop-backend} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(h.metrics.requests.WithLabelValues("401", noKey)); got != 1 {
		t.Fatalf("sluice_ingest_requests_total{code=401,key=none} = %v, want 1", got)
	}
	unnamed := "key-" + digestOf("unnamed-key-0123456789")[:8]
	if names := h.KeyNames(); names[1] != unnamed {
		t.Fatalf("an unnamed key is named %q, want %q (from its digest)", names[1], unnamed)
	}
	if !strings.Contains(logs.String(), `"key":"shop-backend"`) || !strings.Contains(logs.String(), `"key":"none"`) {
		t.Fatalf("the request log does not name the key:\n%s", logs.String())
	}
	exposition, _ := testutil.CollectAndFormat(h.metrics.events, expfmt.TypeTextPlain, "sluice_ingest_events_total")
	for _, secret := range []string{testKey, "unnamed-key-0123456789"} {
		if strings.Contains(logs.String(), secret) || strings.Contains(string(exposition), secret) {
			t.Fatalf("a key in clear in logs or metrics")
		}
	}
}

// TestSetKeysWhileServing: a swap refuses no request of a key kept, takes
// effect for the next request, and an invalid set changes nothing. Run with
// -race: requests read the keyring while it is replaced.
func TestSetKeysWhileServing(t *testing.T) {
	const added = "added-key-0123456789ab"
	h, _ := newTestHandler(t, &recordingAppender{}, Config{Keys: []Key{{Name: "kept", Secret: testKey}}})
	var refused atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if rec := post(h, "application/json", "Bearer "+testKey, ev1); rec.Code != 202 {
					refused.Add(1)
				}
			}
		})
	}
	for i := range 200 {
		keys := []Key{{Name: "kept", Secret: testKey}}
		if i%2 == 0 {
			keys = append(keys, Key{Name: "added", Secret: added})
		}
		if err := h.SetKeys(keys); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if n := refused.Load(); n > 0 {
		t.Fatalf("%d requests of a key kept through every swap were refused", n)
	}
	if rec := post(h, "application/json", "Bearer "+added, ev1); rec.Code != 401 {
		t.Fatalf("a key removed by the last swap: %d, want 401", rec.Code)
	}
	if err := h.SetKeys([]Key{{Name: "kept", Secret: "short"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("an invalid set: %v, want ErrInvalidConfig", err)
	}
	if rec := post(h, "application/json", "Bearer "+testKey, ev1); rec.Code != 202 {
		t.Fatalf("an invalid set changed the keys: %d", rec.Code)
	}
}

// TestScopesMatchAtABoundary: a source or a type wildcard admits the names
// under it — the scope itself, or the scope followed by '/', '.' or ':' —
// never a longer name that merely starts like it; and after a scope that
// ends in a host, only a path or a port.
func TestScopesMatchAtABoundary(t *testing.T) {
	cases := []struct {
		name          string
		sources       []string
		types         []string
		source, typ   string
		wantPublished bool
	}{
		{"a source that is the scope is admitted", []string{"shop"}, nil, "shop", "t", true},
		{"a source under the scope at a '/' is admitted", []string{"shop"}, nil, "shop/checkout", "t", true},
		{"a source under the scope at a '.' is admitted", []string{"shop"}, nil, "shop.eu", "t", true},
		{"a source under the scope at a ':' is admitted", []string{"urn:shop"}, nil, "urn:shop:orders", "t", true},
		{"a source that merely starts with the scope is refused", []string{"shop"}, nil, "shop-evil/checkout", "t", false},
		{"a scope ending with '/' admits what follows it", []string{"//shop/"}, nil, "//shop/eu", "t", true},
		{"a host scope admits its paths", []string{"//shop.example.com"}, nil, "//shop.example.com/eu", "t", true},
		{"a host scope admits its ports", []string{"//shop.example.com"}, nil, "//shop.example.com:8443/eu", "t", true},
		{"a host scope refuses a longer host", []string{"//shop.example.com"}, nil, "//shop.example.com.evil/", "t", false},
		{"a host scope refuses a host whose name starts like it", []string{"//shop.example.com"}, nil, "//shop.example.community/", "t", false},
		{"a host scope refuses another host behind a userinfo", []string{"//shop.example.com"}, nil, "//shop.example.com:x@evil.example/", "t", false},
		{"a URL's host scope refuses a longer host", []string{"https://shop.example.com"}, nil, "https://shop.example.com.evil/x", "t", false},
		{"a URL scope with a path admits the names under it", []string{"https://shop.example.com/eu"}, nil, "https://shop.example.com/eu.west", "t", true},
		{"a type wildcard ending with '.' admits the types after it", nil, []string{"com.shop.*"}, "s", "com.shop.order", true},
		{"a type wildcard admits the type itself", nil, []string{"com.shop*"}, "s", "com.shop", true},
		{"a type wildcard admits the types under it", nil, []string{"com.shop*"}, "s", "com.shop.order", true},
		{"a type wildcard refuses a type that merely starts like it", nil, []string{"com.shop*"}, "s", "com.shopevil.order", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := &recordingAppender{}
			h, _ := newTestHandler(t, out, Config{Keys: []Key{{Secret: testKey, Sources: c.sources, Types: c.types}}})
			rec := post(h, "application/cloudevents+json", "Bearer "+testKey,
				fmt.Sprintf(`{"specversion":"1.0","id":"1","source":%q,"type":%q}`, c.source, c.typ))
			want := http.StatusForbidden
			if c.wantPublished {
				want = http.StatusAccepted
			}
			if rec.Code != want {
				t.Fatalf("source %q, type %q with sources %q, types %q: %d %s, want %d", c.source, c.typ, c.sources, c.types, rec.Code, rec.Body, want)
			}
		})
	}
}
