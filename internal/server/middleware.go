package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fashion-classifier/fashion/internal/fetch"
)

// requestIDKey is the context key under which a request's ID is stored.
type requestIDKey struct{}

// requestIDFrom returns the request ID stored in ctx, or "".
func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestIDs makes request IDs that are unique per process without a
// syscall per request: a random per-server prefix and a counter.
type requestIDs struct {
	prefix string
	n      *atomic.Uint64
}

func newRequestIDs() requestIDs {
	var b [6]byte
	rand.Read(b[:]) // never fails; see crypto/rand.Read
	return requestIDs{prefix: hex.EncodeToString(b[:]) + "-", n: new(atomic.Uint64)}
}

func (g requestIDs) next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}

// validRequestID reports whether a client-supplied X-Request-ID is safe to
// echo and log: short and printable ASCII without spaces.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// statusWriter remembers the status code and size of a response.
type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// StatusClientClosedRequest is the status logged and counted for a request
// whose client went away before the answer (nginx's 499): it is nobody's
// overload, so it must not look like a 503.
const StatusClientClosedRequest = fetch.StatusClientClosedRequest

// errRequestTimeout is the cause of a request context ended by
// Config.RequestTimeout.
var errRequestTimeout = errors.New("request deadline passed")

// middleware wraps the routes with what every request gets: a request ID,
// the request deadline (Config.RequestTimeout), CORS, panic recovery,
// metrics and one structured log line. (fail answers 499 for a request
// whose client hung up, so logs and metrics count it as such.)
func (s *Server) middleware(next http.Handler) http.Handler {
	origins := make(map[string]bool, len(s.cfg.CORSOrigins))
	for _, o := range s.cfg.CORSOrigins {
		origins[strings.TrimSuffix(o, "/")] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-ID")
		if !validRequestID(id) {
			id = s.ids.next()
		}
		w.Header().Set("X-Request-ID", id)
		ctx, cancel := context.WithTimeoutCause(r.Context(), s.cfg.RequestTimeout, errRequestTimeout)
		defer cancel()
		ctx = context.WithValue(ctx, requestIDKey{}, id)
		r = r.WithContext(context.WithValue(ctx, hostKey{}, r.Host))
		sw := &statusWriter{ResponseWriter: w}

		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panicked", "request_id", id, "method", r.Method,
					"path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				if sw.code == 0 {
					writeError(sw, http.StatusInternalServerError, "internal error; see the server log for request "+id)
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			d := time.Since(start)
			s.metrics.observe(route, sw.code, d.Seconds())
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("request_id", id),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", route),
				slog.Int("status", sw.code),
				slog.Int64("bytes", sw.bytes),
				slog.Duration("duration", d),
				slog.String("remote", r.RemoteAddr))
		}()

		if origin := r.Header.Get("Origin"); origin != "" && len(origins) > 0 {
			if origins["*"] || origins[origin] {
				h := w.Header()
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
				h.Set("Access-Control-Expose-Headers", "X-Request-ID, Retry-After")
				if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
					h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
					h.Set("Access-Control-Allow-Headers", "Content-Type, X-Request-ID, Inference-Header-Content-Length")
					h.Set("Access-Control-Max-Age", "600")
					r.Pattern = "OPTIONS (CORS preflight)"
					sw.WriteHeader(http.StatusNoContent)
					return
				}
			}
		}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
	})
}

// errorBody is the JSON error every endpoint answers with, as the Open
// Inference Protocol prescribes: {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
}

// writeError answers code with a JSON error message.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// writeJSON answers code with v encoded as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a programming error (an unencodable type) gets here.
		code = http.StatusInternalServerError
		b = []byte(`{"error":"internal error: encoding the response failed"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	b = append(b, '\n')
	w.Write(b)
}

// httpError is an error with the HTTP status it should be answered with.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

// withStatus attaches an HTTP status to err.
func withStatus(code int, err error) error {
	return &httpError{code: code, err: err}
}

// statusOf returns the HTTP status an error should be answered with.
func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.code
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	switch {
	case errors.Is(err, errQueueFull), errors.Is(err, errStopped), errors.Is(err, errOverloaded),
		errors.Is(err, errBodyBudget), errors.Is(err, errTooManyFetches):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return StatusClientClosedRequest
	}
	return http.StatusInternalServerError
}

// fail answers err with its status; 503s carry Retry-After so clients back
// off instead of hammering a full queue. When the request's own context has
// ended, that is the answer, unless err already carries a status of its own
// (a 408 for a body too slow, say): 499 if the client left (net/http
// cancels the context when the connection fails), 504 if the request
// deadline passed, whatever error the cancellation surfaced as.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	var he *httpError
	switch {
	case ctx.Err() == nil || errors.As(err, &he):
	case errors.Is(context.Cause(ctx), errRequestTimeout):
		err = withStatus(http.StatusGatewayTimeout, fmt.Errorf("request took longer than the server's %v request deadline: %w", s.cfg.RequestTimeout, err))
	default:
		err = withStatus(StatusClientClosedRequest, fmt.Errorf("client closed the request: %w", err))
	}
	code := statusOf(err)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	switch {
	case code == StatusClientClosedRequest:
		s.log.Info("client went away", "request_id", requestIDFrom(ctx), "error", err)
	case code >= 500:
		s.log.Warn("request failed", "request_id", requestIDFrom(ctx), "status", code, "error", err)
	}
	writeError(w, code, err.Error())
}
