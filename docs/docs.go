// Package docs holds sluice's HTTP contract, openapi.yaml (OpenAPI 3.1),
// embedded in the binary. Ingest serves the whole document on its admin
// listener and the public listener's own part of it on the public one:
//
//	public.Handle("GET /openapi.yaml", docs.PublicHandler())
//	private.Handle("GET /openapi.yaml", docs.Handler())
//
// Each Server Object of the document is marked with the listener it is
// (x-sluice-listener: public, admin or applier), and each path lists the
// servers that serve it; View cuts the document down to one listener.
package docs

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

//go:embed openapi.yaml
var openAPI []byte

// ListenerExtension marks each Server Object with the listener it is.
const ListenerExtension = "x-sluice-listener"

// OpenAPI returns the whole document: the ingest API, the admin API and the
// probes of every listener.
func OpenAPI() []byte { return bytes.Clone(openAPI) }

// PublicOpenAPI returns the document as the public listener serves it: the
// paths it serves, the components they use, and no other server.
func PublicOpenAPI() ([]byte, error) {
	b, err := publicView()
	return bytes.Clone(b), err
}

var publicView = sync.OnceValues(func() ([]byte, error) { return View(openAPI, "public") })

// MediaType is the media type the document is served as (RFC 9512).
const MediaType = "application/yaml"

// Handler serves the whole document.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { serve(w, openAPI, nil) })
}

// PublicHandler serves the public listener's part of the document.
func PublicHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b, err := publicView()
		serve(w, b, err)
	})
}

func serve(w http.ResponseWriter, doc []byte, err error) {
	if err != nil { // the embedded document is broken: the package's tests say so first
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string][]map[string]string{"errors": {{"error": "the API document cannot be served: " + err.Error()}}})
		return
	}
	w.Header().Set("Content-Type", MediaType)
	_, _ = w.Write(doc)
}

// View returns the OpenAPI document doc cut down to what one listener
// serves: the Server Objects marked for another listener are removed (an
// unmarked one stays), then every path left without a server, then the
// components, security schemes and tags nothing left refers to. Comments,
// key order and styles are kept.
func View(doc []byte, listener string) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, fmt.Errorf("parse the document: %w", err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("the document is not a YAML mapping")
	}
	top := root.Content[0]
	docServers := value(top, "servers")
	if docServers != nil {
		keepServers(docServers, listener)
		if len(docServers.Content) == 0 {
			return nil, fmt.Errorf("no server of the document is the %s listener's (%s)", listener, ListenerExtension)
		}
	}
	if paths := value(top, "paths"); paths != nil {
		filterMapping(paths, func(_ string, item *yaml.Node) bool {
			servers := value(item, "servers")
			if servers == nil {
				return docServers != nil // the document's servers, already cut down
			}
			keepServers(servers, listener)
			return len(servers.Content) > 0
		})
	}
	pruneComponents(top)
	pruneSecuritySchemes(top)
	pruneTags(top)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// value returns the value of key in mapping m, or nil.
func value(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// filterMapping keeps the entries of mapping m that keep says to keep.
func filterMapping(m *yaml.Node, keep func(key string, v *yaml.Node) bool) {
	out := m.Content[:0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if keep(m.Content[i].Value, m.Content[i+1]) {
			out = append(out, m.Content[i], m.Content[i+1])
		}
	}
	m.Content = out
}

// keepServers removes from a sequence of Server Objects those marked for
// another listener.
func keepServers(servers *yaml.Node, listener string) {
	if servers.Kind != yaml.SequenceNode {
		return
	}
	servers.Content = slices.DeleteFunc(servers.Content, func(s *yaml.Node) bool {
		mark := value(s, ListenerExtension)
		return mark != nil && mark.Value != listener
	})
}

// componentRef is the kind and name of a local "#/components/<kind>/<name>"
// reference.
func componentRef(ref string) (kind, name string, ok bool) {
	rest, ok := strings.CutPrefix(ref, "#/components/")
	if !ok {
		return "", "", false
	}
	kind, name, ok = strings.Cut(rest, "/")
	if i := strings.IndexByte(name, '/'); i >= 0 {
		name = name[:i] // a reference into a component keeps all of it
	}
	return kind, strings.ReplaceAll(strings.ReplaceAll(name, "~1", "/"), "~0", "~"), ok
}

// pruneComponents removes the components that nothing outside components
// refers to, directly or through other components. Security schemes are
// named by security requirements, not referenced: see pruneSecuritySchemes.
func pruneComponents(top *yaml.Node) {
	components := value(top, "components")
	if components == nil {
		return
	}
	used := map[[2]string]bool{}
	var queue []*yaml.Node
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value != "$ref" || n.Content[i+1].Kind != yaml.ScalarNode {
					continue
				}
				kind, name, ok := componentRef(n.Content[i+1].Value)
				if !ok || used[[2]string{kind, name}] {
					continue
				}
				used[[2]string{kind, name}] = true
				if c := value(value(components, kind), name); c != nil {
					queue = append(queue, c)
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "components" {
			walk(top.Content[i+1])
		}
	}
	for len(queue) > 0 {
		n := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		walk(n)
	}
	filterMapping(components, func(kind string, entries *yaml.Node) bool {
		if kind == "securitySchemes" || strings.HasPrefix(kind, "x-") || entries.Kind != yaml.MappingNode {
			return true
		}
		filterMapping(entries, func(name string, _ *yaml.Node) bool { return used[[2]string{kind, name}] })
		return len(entries.Content) > 0
	})
}

// operationMethods are the keys of a Path Item Object that are operations.
var operationMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// operations calls fn with every operation of the document's paths.
func operations(top *yaml.Node, fn func(op *yaml.Node)) {
	paths := value(top, "paths")
	if paths == nil {
		return
	}
	for i := 1; i < len(paths.Content); i += 2 {
		for _, m := range operationMethods {
			if op := value(paths.Content[i], m); op != nil {
				fn(op)
			}
		}
	}
}

// pruneSecuritySchemes removes the security schemes that no security
// requirement left names.
func pruneSecuritySchemes(top *yaml.Node) {
	schemes := value(value(top, "components"), "securitySchemes")
	if schemes == nil {
		return
	}
	named := map[string]bool{}
	collect := func(security *yaml.Node) {
		if security == nil {
			return
		}
		for _, req := range security.Content {
			for i := 0; i+1 < len(req.Content); i += 2 {
				named[req.Content[i].Value] = true
			}
		}
	}
	collect(value(top, "security"))
	operations(top, func(op *yaml.Node) { collect(value(op, "security")) })
	filterMapping(schemes, func(name string, _ *yaml.Node) bool { return named[name] })
	if len(schemes.Content) == 0 {
		filterMapping(value(top, "components"), func(kind string, _ *yaml.Node) bool { return kind != "securitySchemes" })
	}
}

// pruneTags removes the tags that no operation left has.
func pruneTags(top *yaml.Node) {
	tags := value(top, "tags")
	if tags == nil || tags.Kind != yaml.SequenceNode {
		return
	}
	used := map[string]bool{}
	operations(top, func(op *yaml.Node) {
		if t := value(op, "tags"); t != nil {
			for _, name := range t.Content {
				used[name.Value] = true
			}
		}
	})
	tags.Content = slices.DeleteFunc(tags.Content, func(t *yaml.Node) bool {
		name := value(t, "name")
		return name == nil || !used[name.Value]
	})
}
