package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/deadletter"
	"github.com/sluicehq/sluice/internal/jsonerror"
	"github.com/sluicehq/sluice/operations"
)

//go:embed ui
var uiFiles embed.FS

// ErrInvalidConfig is wrapped by NewHandler for a configuration it refuses.
var ErrInvalidConfig = errors.New("invalid admin configuration")

// Config configures the admin API.
type Config struct {
	// Ops carries out what the API is asked. Required.
	Ops *operations.Ops
	// Token is the admin bearer token: at least 16 characters, and never
	// an ingest key (a publisher must not be able to pause a target).
	Token string
	// IsIngestKey tells whether a secret is an ingest key; nil: none is.
	IsIngestKey func(secret string) bool
	Logger      *slog.Logger
}

// Handler serves /v1/admin/… and /ui/. Safe for concurrent use.
type Handler struct {
	cfg   Config
	token [sha256.Size]byte
	mux   *http.ServeMux
	ops   *operations.Ops
	log   *slog.Logger
}

// NewHandler validates cfg and returns the admin handler.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Ops == nil {
		return nil, fmt.Errorf("%w: Ops is required", ErrInvalidConfig)
	}
	if len(cfg.Token) < 16 {
		return nil, fmt.Errorf("%w: the admin token must be at least 16 characters", ErrInvalidConfig)
	}
	if cfg.IsIngestKey != nil && cfg.IsIngestKey(cfg.Token) {
		return nil, fmt.Errorf("%w: the admin token must not be one of the ingest keys", ErrInvalidConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, token: sha256.Sum256([]byte(cfg.Token)), mux: http.NewServeMux(),
		ops: cfg.Ops, log: cfg.Logger}
	h.mux.HandleFunc("GET /v1/admin/targets", h.authed(h.status))
	h.mux.HandleFunc("POST /v1/admin/targets/{target}/pause", h.authed(h.pause(true)))
	h.mux.HandleFunc("POST /v1/admin/targets/{target}/resume", h.authed(h.pause(false)))
	h.mux.HandleFunc("POST /v1/admin/targets/{target}/rewind", h.authed(h.rewind))
	h.mux.HandleFunc("GET /v1/admin/targets/{target}/dlq", h.authed(h.dlqList))
	h.mux.HandleFunc("POST /v1/admin/targets/{target}/dlq/replay", h.authed(h.dlqReplay))
	h.mux.HandleFunc("GET /v1/admin/verify", h.authed(h.verify))
	static, _ := fs.Sub(uiFiles, "ui")
	files := http.StripPrefix("/ui/", http.FileServerFS(static))
	h.mux.HandleFunc("GET /ui/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/ui/")
		if _, err := fs.Stat(static, name); name != "" && err != nil {
			fail(w, http.StatusNotFound, "no such file: "+r.URL.Path) // the file server's answer would be text
			return
		}
		files.ServeHTTP(w, r)
	})
	h.mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusFound) })
	h.mux.HandleFunc("/v1/admin/", h.noRoute)
	return h, nil
}

// noRoute answers a request no admin route takes: 405 with Allow when the
// path is served for other methods, else 404, in the one error shape.
func (h *Handler) noRoute(w http.ResponseWriter, r *http.Request) {
	jsonerror.Unrouted(w, r, h.mux, "/v1/admin/")
}

// requestTimeout bounds each admin request: Kafka or a target that does not
// answer gets a 502 instead of a request that hangs.
const requestTimeout = 2 * time.Minute

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	h.mux.ServeHTTP(w, r.WithContext(ctx))
}

// uiPolicy lets the status page load its own files and call its own API,
// and nothing else: no inline script, no other origin, no framing.
const uiPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// setSecurityHeaders is on every admin answer: the page and the API hold
// the means to pause and rewind targets, so neither may be framed, sniffed
// into another type, cached or leak its URL (the token rides in the page's
// fragment, which browsers do not send, but the path does).
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", uiPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) { jsonerror.Write(w, code, msg) }

// authed checks the admin token in constant time.
func (h *Handler) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], h.token[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-admin"`)
			fail(w, http.StatusUnauthorized, "missing or wrong admin token (send Authorization: Bearer <ingest.admin_token>; ingest keys are not admin tokens)")
			return
		}
		next(w, r)
	}
}

func (h *Handler) target(w http.ResponseWriter, name string) (operations.Target, bool) {
	t, err := h.ops.Target(name)
	if err != nil {
		fail(w, http.StatusNotFound, err.Error())
		return t, false
	}
	return t, true
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	views, err := h.ops.Status(ctx)
	if err != nil {
		fail(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, views)
}

func by(r *http.Request) string { return "admin-api:" + r.RemoteAddr }

func (h *Handler) pause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, ok := h.target(w, r.PathValue("target"))
		if !ok {
			return
		}
		changed, err := h.ops.Control().SetPaused(r.Context(), t.Name, paused, by(r))
		if errors.Is(err, control.ErrConflict) {
			fail(w, http.StatusConflict, err.Error())
			return
		}
		if err != nil {
			fail(w, http.StatusBadGateway, err.Error())
			return
		}
		msg := map[[2]bool]string{
			{true, true}: "paused", {true, false}: "already paused: nothing to do",
			{false, true}: "resumed", {false, false}: "not paused: nothing to do",
		}[[2]bool{paused, changed}]
		h.log.Info("admin: "+msg, "target", t.Name, "by", by(r))
		writeJSON(w, http.StatusOK, map[string]any{"target": t.Name, "paused": paused, "changed": changed, "message": msg})
	}
}

func (h *Handler) rewind(w http.ResponseWriter, r *http.Request) {
	t, ok := h.target(w, r.PathValue("target"))
	if !ok {
		return
	}
	var body struct {
		ToTime   *time.Time `json:"to_time"`
		ToOffset string     `json:"to_offset"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
		fail(w, http.StatusBadRequest, "body must be {\"to_time\": RFC 3339} or {\"to_offset\": \"earliest\"|N}: "+err.Error())
		return
	}
	rw, err := h.ops.Control().IssueRewind(r.Context(), t.Name, h.ops.EventsTopic(), control.RewindRequest{ToTime: body.ToTime, ToOffset: body.ToOffset}, by(r))
	switch {
	case errors.Is(err, control.ErrBadRewind):
		fail(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, control.ErrConflict):
		fail(w, http.StatusConflict, err.Error())
	case errors.Is(err, control.ErrBeforeRetention):
		fail(w, http.StatusUnprocessableEntity, err.Error())
	case err != nil:
		fail(w, http.StatusBadGateway, err.Error())
	default:
		h.log.Warn("admin: rewind issued", "target", t.Name, "rewind", rw.ID, "by", by(r))
		writeJSON(w, http.StatusOK, rw)
	}
}

func (h *Handler) dlqList(w http.ResponseWriter, r *http.Request) {
	t, ok := h.target(w, r.PathValue("target"))
	if !ok {
		return
	}
	list, err := h.ops.ListDLQ(r.Context(), t.Name, r.URL.Query().Get("all") != "")
	if err != nil {
		fail(w, http.StatusBadGateway, err.Error())
		return
	}
	if list == nil {
		list = []deadletter.Letter{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *Handler) dlqReplay(w http.ResponseWriter, r *http.Request) {
	t, ok := h.target(w, r.PathValue("target"))
	if !ok {
		return
	}
	res, err := h.ops.ReplayDLQ(r.Context(), t.Name)
	if err != nil {
		fail(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a, ok := h.target(w, q.Get("a"))
	if !ok {
		return
	}
	b, ok := h.target(w, q.Get("b"))
	if !ok {
		return
	}
	vc := operations.VerifyRequest{A: a.Name, B: b.Name}
	for name, dst := range map[string]*time.Time{"from": &vc.From, "to": &vc.To} {
		if s := q.Get(name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				fail(w, http.StatusBadRequest, fmt.Sprintf("%s=%q is not an RFC 3339 time", name, s))
				return
			}
			*dst = t
		}
	}
	if s := q.Get("keys"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			fail(w, http.StatusBadRequest, fmt.Sprintf("keys=%q is not a non-negative number", s))
			return
		}
		vc.Keys = n
	}
	if s := q.Get("bucket"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			fail(w, http.StatusBadRequest, fmt.Sprintf("bucket=%q is not a positive duration", s))
			return
		}
		vc.Bucket = d
	}
	res, err := h.ops.Verify(r.Context(), vc)
	if err != nil {
		fail(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agree": res.FirstDiff == nil, "result": res})
}
