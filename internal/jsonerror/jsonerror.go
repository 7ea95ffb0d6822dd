// Package jsonerror owns the one shape of every error answer sluice's HTTP
// servers give — ingest, the admin API, the appliers' ops listeners:
//
//	{"errors":[{"index":3,"error":"…"},{"error":"…"}]}
//
// ("index" only when the fault is one event's) — and the answer to a
// request that no route of a mux takes: 405 with Allow when the path is
// served for other methods, else 404.
//
//	jsonerror.Write(w, http.StatusBadRequest, "no events")
package jsonerror

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Body is an error answer.
type Body struct {
	Errors []Item `json:"errors"`
}

// Item is one error; Index names the event at fault, when one is.
type Item struct {
	Index *int   `json:"index,omitempty"`
	Error string `json:"error"`
}

// New is the body of one error.
func New(msg string) Body { return Body{Errors: []Item{{Error: msg}}} }

// Write answers code with the body of one error.
func Write(w http.ResponseWriter, code int, msg string) { WriteBody(w, code, New(msg)) }

// WriteBody answers code with b.
func WriteBody(w http.ResponseWriter, code int, b Body) {
	body, _ := json.Marshal(b)
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// probedMethods are the methods an unrouted request is probed with.
var probedMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}

// Unrouted answers r, which no route of mux takes but the catch-all
// pattern (empty for none): 405 naming the methods the path is served
// for (and Allow), or 404.
func Unrouted(w http.ResponseWriter, r *http.Request, mux *http.ServeMux, catchAll string) {
	var allowed []string
	for _, m := range probedMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != catchAll {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) == 0 {
		Write(w, http.StatusNotFound, fmt.Sprintf("no such route: %s %s", r.Method, r.URL.Path))
		return
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	Write(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
}
