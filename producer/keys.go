package producer

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/schema"
)

// Key is one publisher's credential and what it may publish.
//
// Exactly one of Secret and SHA256 is set: SHA256 lets a configuration
// file name a key without holding it, as a password file holds hashes.
// Keys are random strings of at least 16 characters, so an unsalted digest
// is as good as the key's own entropy.
type Key struct {
	// Name identifies the key in logs, metrics and the sluice-key header of
	// every record it published; never the key itself. Default: "key-"
	// and the first 8 hex digits of the key's digest.
	Name string
	// Secret is the key in clear.
	Secret string
	// SHA256 is the key's SHA-256 digest in hex (`printf %s KEY | sha256sum`).
	SHA256 string
	// Sources are the scopes an event's source must be under: a scope
	// admits itself and itself followed by '/', '.' or ':' (anything, when
	// it ends with one of them), and after a host only a path or a port:
	// "//shop.example.com" admits "//shop.example.com/eu" and
	// "//shop.example.com:8443/eu", never "//shop.example.com.evil/". None:
	// any source.
	Sources []string
	// Types are the event types the key may publish; one ending in "*"
	// admits the type before the "*" and the types under it, as a source
	// scope does ("com.shop.*", "com.shop*"). None: any type.
	Types []string
}

// Secrets is one unscoped key for each secret, named after its digest.
func Secrets(secrets ...string) []Key {
	keys := make([]Key, len(secrets))
	for i, s := range secrets {
		keys[i] = Key{Secret: s}
	}
	return keys
}

// KeysHold reports whether secret is one of keys (given in clear or as a
// digest).
func KeysHold(keys []Key, secret string) bool {
	d := sha256.Sum256([]byte(secret))
	for _, k := range keys {
		sk, err := k.compile()
		if err == nil && subtle.ConstantTimeCompare(sk.digest[:], d[:]) == 1 {
			return true
		}
	}
	return false
}

// KeyHeader is the record header that names the key which published it.
const KeyHeader = "sluice-key"

var keyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// scopedKey is a Key as the handler checks it.
type scopedKey struct {
	name    string
	digest  [sha256.Size]byte
	sources []string
	types   []string
}

// keyring checks bearer keys in constant time against SHA-256 digests, so
// that comparing is independent of a key's length and the process never
// holds a key in clear after it starts. It is immutable: a reload builds a
// new one.
type keyring struct {
	keys []scopedKey
}

// newKeyring validates keys, naming the first one at fault by its index.
func newKeyring(keys []Key) (*keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: ingest.keys: at least one key is required", ErrInvalidConfig)
	}
	k := &keyring{keys: make([]scopedKey, 0, len(keys))}
	names := map[string]int{}
	digests := map[[sha256.Size]byte]int{}
	for i, key := range keys {
		sk, err := key.compile()
		if err != nil {
			return nil, fmt.Errorf("%w: ingest.keys[%d]: %v", ErrInvalidConfig, i, err)
		}
		if j, dup := names[sk.name]; dup {
			return nil, fmt.Errorf("%w: ingest.keys[%d]: name %q is also the name of ingest.keys[%d]", ErrInvalidConfig, i, sk.name, j)
		}
		if j, dup := digests[sk.digest]; dup {
			return nil, fmt.Errorf("%w: ingest.keys[%d]: the same key as ingest.keys[%d]", ErrInvalidConfig, i, j)
		}
		names[sk.name], digests[sk.digest] = i, i
		k.keys = append(k.keys, sk)
	}
	return k, nil
}

func (key Key) compile() (scopedKey, error) {
	var sk scopedKey
	switch {
	case key.Secret != "" && key.SHA256 != "":
		return sk, fmt.Errorf("give the key or its sha256, not both")
	case key.Secret != "":
		if len(key.Secret) < 16 {
			return sk, fmt.Errorf("a key must be at least 16 characters")
		}
		sk.digest = sha256.Sum256([]byte(key.Secret))
	case key.SHA256 != "":
		d, err := hex.DecodeString(strings.TrimSpace(key.SHA256))
		if err != nil || len(d) != sha256.Size {
			return sk, fmt.Errorf("sha256 must be 64 hex digits (printf %%s KEY | sha256sum)")
		}
		copy(sk.digest[:], d)
	default:
		return sk, fmt.Errorf("a key (or its sha256) is required")
	}
	sk.name = key.Name
	if sk.name == "" {
		sk.name = "key-" + hex.EncodeToString(sk.digest[:4])
	}
	if !keyName.MatchString(sk.name) {
		return sk, fmt.Errorf("name %q: letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit", sk.name)
	}
	for _, s := range key.Sources {
		if s == "" {
			return sk, fmt.Errorf("sources: an empty scope would allow every source; leave sources out instead")
		}
	}
	for _, t := range key.Types {
		if t == "" || t == "*" {
			return sk, fmt.Errorf("types: %q would allow every type; leave types out instead", t)
		}
	}
	sk.sources, sk.types = key.Sources, key.Types
	return sk, nil
}

// match returns the key the Authorization header carries, if it is one of
// the keys. It compares against every key, whatever the outcome, so that
// timing says nothing about which key (or how much of it) matched.
func (k *keyring) match(authorization string) (*scopedKey, bool) {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, false
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, false
	}
	return k.lookup(token)
}

func (k *keyring) lookup(secret string) (*scopedKey, bool) {
	got := sha256.Sum256([]byte(secret))
	found := -1
	for i := range k.keys {
		if subtle.ConstantTimeCompare(got[:], k.keys[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil, false
	}
	return &k.keys[found], true
}

func (k *keyring) names() []string {
	out := make([]string, len(k.keys))
	for i := range k.keys {
		out[i] = k.keys[i].name
	}
	return out
}

// refuses lists the events the key may not publish, at most max of them
// (and how many there were in all).
func (sk *scopedKey) refuses(events []schema.Event, max int) ([]schema.EventError, int) {
	if len(sk.sources) == 0 && len(sk.types) == 0 {
		return nil, 0
	}
	var faults []schema.EventError
	n := 0
	for i := range events {
		var err error
		switch {
		case !sk.allowsSource(events[i].Source):
			err = fmt.Errorf("key %q may not publish source %q (allowed: sources under %s)", sk.name, events[i].Source, quoteList(sk.sources))
		case !sk.allowsType(events[i].Type):
			err = fmt.Errorf("key %q may not publish type %q (allowed: %s)", sk.name, events[i].Type, quoteList(sk.types))
		default:
			continue
		}
		if n++; len(faults) < max {
			faults = append(faults, schema.EventError{Index: i, Err: err})
		}
	}
	return faults, n
}

func (sk *scopedKey) allowsSource(source string) bool {
	if len(sk.sources) == 0 {
		return true
	}
	for _, scope := range sk.sources {
		if sourceUnderScope(source, scope) {
			return true
		}
	}
	return false
}

func (sk *scopedKey) allowsType(typ string) bool {
	if len(sk.types) == 0 {
		return true
	}
	for _, t := range sk.types {
		if scope, wild := strings.CutSuffix(t, "*"); wild && underScope(typ, scope) || t == typ {
			return true
		}
	}
	return false
}

// scopeBoundaries are the characters at which a name goes on to a name
// under it: a path's '/', a domain-like type's '.', a URN's ':'.
const scopeBoundaries = "/.:"

// underScope reports whether value is scope or a name under it: value is
// scope, or starts with it and goes on at a boundary, right after the scope
// or within it (a scope that ends with '/', '.' or ':' is a plain prefix).
// A plain prefix alone would let the scope "shop" admit "shop-evil/x".
func underScope(value, scope string) bool {
	rest, ok := strings.CutPrefix(value, scope)
	switch {
	case !ok:
		return false
	case rest == "" || strings.ContainsRune(scopeBoundaries, rune(scope[len(scope)-1])):
		return true
	}
	return strings.ContainsRune(scopeBoundaries, rune(rest[0]))
}

// sourceUnderScope is underScope for a source, a URI-reference, with one
// exception: after a scope that ends in a URI's host ("//shop.example.com",
// "https://shop.example.com") only a path or a port may follow. There a
// '.' goes on to another host ("//shop.example.com.evil"), and a ':' not
// followed by a port to another host behind a userinfo
// ("//shop.example.com:x@evil.example").
func sourceUnderScope(source, scope string) bool {
	if !underScope(source, scope) {
		return false
	}
	if !endsInHost(scope) || strings.ContainsRune(scopeBoundaries, rune(scope[len(scope)-1])) {
		return true
	}
	rest := source[len(scope):]
	if port, ok := strings.CutPrefix(rest, ":"); ok {
		port, _, _ = strings.Cut(port, "/")
		return port != "" && strings.Trim(port, "0123456789") == ""
	}
	return rest == "" || rest[0] == '/'
}

// endsInHost reports whether scope ends within the authority of a URI: it
// has a "//" (at its start or after a scheme's ':') and no path after it.
func endsInHost(scope string) bool {
	i := strings.Index(scope, "//")
	if i < 0 || i > 0 && scope[i-1] != ':' {
		return false
	}
	host := scope[i+2:]
	return host != "" && !strings.ContainsAny(host, "/?#")
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}
