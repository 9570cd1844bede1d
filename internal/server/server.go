// Package server is the HTTP classification service behind "fashion serve".
//
// It offers three ways in to one model, all sharing the same decoding,
// preprocessing (package imageprep), normalisation (modelfile.Info.Normalize) and
// micro-batched inference:
//
//   - the original report's endpoints, GET /image-view and GET /image-classify,
//     which fetch an image by URL through the SSRF-safe client of package
//     fetch;
//   - POST /v1/classify for uploads (raw body, multipart batches, JSON);
//   - the KServe / Open Inference Protocol v2 REST API under /v2.
//
// Beside them it serves health and readiness probes, Prometheus metrics on a
// private registry, an OpenAPI 3 document with a Swagger UI, and a small web
// page for people. Everything the server needs arrives through Config, a
// Predictor and a *slog.Logger; nothing is global.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/fashion-classifier/fashion/internal/fetch"
	"github.com/fashion-classifier/fashion/internal/imageprep"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// Predictor is the model as the server sees it: a description and a batched
// forward pass. *modelfile.Classifier satisfies it; tests use small fakes.
type Predictor interface {
	// Info describes the model, including its labels and normalisation.
	Info() modelfile.Info
	// Predict returns n×len(Info().Classes) probabilities, row-major, for n
	// normalised images x laid out as [n,1,28,28].
	Predict(x []float32, n int) ([]float32, error)
}

// Config holds everything that tunes the server. The zero value of each field
// means its documented default, so Config{} is a valid configuration.
type Config struct {
	// Addr is the TCP address Run listens on; default ":8080".
	Addr string
	// ModelName is the name under /v2/models/{name}; default "fashion-mnist".
	ModelName string
	// Version is reported by GET /v2 and in logs; default "dev".
	Version string

	// MaxBatch is the most images one forward pass takes; default 32.
	MaxBatch int
	// MaxDelay is how long a forming batch may wait for more requests while
	// other requests are still being decoded; default 500µs. Negative means
	// never wait.
	MaxDelay time.Duration
	// Queue is the most images waiting for inference; a request that would
	// overflow it gets 503 with Retry-After at once, so overload costs
	// neither memory nor latency for the requests already accepted.
	// Default 4×MaxBatch: at most a few forward passes of waiting.
	Queue int
	// MaxInFlight is the most inference requests (POST /v1/classify, v2
	// infer, GET /image-classify and /image-view) served at once, counted
	// per request whatever its number of images. A request beyond it gets
	// 503 with Retry-After before its body is read, so refusing costs
	// almost nothing and memory is bounded by the admitted requests.
	// Default MaxBatch×Workers, at most Queue: one full batch per worker is
	// enough to keep the model busy (throughput at 16 concurrent uploads
	// already equals the server's capacity), and every request admitted
	// beyond that would only wait, adding its share of a forward pass to
	// everyone's latency. Measured under 5× overload (bench/overload,
	// MaxBatch 32, Queue 64): 64 in flight gave an accepted p99 of 94 ms,
	// 32 gave 31 ms at the same throughput, 16 lost a fifth of it.
	MaxInFlight int
	// Workers is the number of goroutines running forward passes; default 1,
	// since a forward pass already uses every core for large batches.
	Workers int

	// MaxBody caps request bodies in bytes (413 beyond it); default 10 MB.
	MaxBody int64
	// MaxPixels caps the decoded size of one image, checked before decoding;
	// default imageprep.DefaultMaxPixels.
	MaxPixels int
	// MaxImages caps the images of one batch request; default 256.
	MaxImages int
	// Fetch is the policy for URLs the server fetches. Its zero value is the
	// safe default: public addresses only.
	Fetch fetch.Policy

	// CORSOrigins lists origins allowed to call the API from a browser; "*"
	// allows any. Empty means no CORS headers at all.
	CORSOrigins []string

	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout configure
	// the http.Server; defaults 5s, 30s, 60s and 120s.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// DrainDelay is how long the server keeps serving with readiness false
	// before it stops accepting connections, so load balancers notice;
	// default 0 (Kubernetes deployments usually delay in preStop instead).
	DrainDelay time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after shutdown begins; default 30s.
	ShutdownTimeout time.Duration
}

// withDefaults returns c with every unset field replaced by its default.
func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.ModelName == "" {
		c.ModelName = "fashion-mnist"
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 32
	}
	def(&c.MaxDelay, 500*time.Microsecond)
	if c.Queue <= 0 {
		c.Queue = 4 * c.MaxBatch
	}
	if c.Workers <= 0 {
		c.Workers = 1
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = min(c.MaxBatch*c.Workers, c.Queue)
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 10 << 20
	}
	if c.MaxPixels <= 0 {
		c.MaxPixels = imageprep.DefaultMaxPixels
	}
	if c.MaxImages <= 0 {
		c.MaxImages = 256
	}
	if c.Fetch.MaxBytes <= 0 {
		c.Fetch.MaxBytes = c.MaxBody
	}
	def(&c.ReadHeaderTimeout, 5*time.Second)
	def(&c.ReadTimeout, 30*time.Second)
	def(&c.WriteTimeout, 60*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.ShutdownTimeout, 30*time.Second)
	return c
}

// Server is the classification service as an http.Handler. Create it with
// New; Serve runs it on a listener. A Server is single-use: once Serve (or
// Close) returns, its batcher is stopped.
type Server struct {
	cfg   Config
	pred  Predictor
	info  modelfile.Info
	log   *slog.Logger
	fetch *fetch.Client
	batch *batcher
	// admission bounds the inference requests in flight; see admit.
	admission admission
	metrics   *serverMetrics
	ready     atomic.Bool
	handler   http.Handler
	ids       requestIDs
}

// New builds a server for predictor p. It checks the model description,
// starts the micro-batcher and returns the server ready to handle requests.
// Call Close (or Serve, which closes it) to stop the batcher.
func New(cfg Config, p Predictor, log *slog.Logger) (*Server, error) {
	if p == nil {
		return nil, errors.New("server: no predictor")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	info := p.Info()
	if len(info.Classes) == 0 {
		return nil, fmt.Errorf("server: model %q has no class labels", info.Name)
	}
	if info.Std == 0 {
		return nil, fmt.Errorf("server: model %q has normalisation std 0", info.Name)
	}
	for _, o := range cfg.CORSOrigins {
		if o == "" {
			return nil, errors.New("server: empty CORS origin")
		}
	}
	s := &Server{
		cfg:   cfg,
		pred:  p,
		info:  info,
		log:   log,
		fetch: fetch.New(cfg.Fetch),
		ids:   newRequestIDs(),
	}
	s.admission.max = int64(cfg.MaxInFlight)
	s.metrics = newServerMetrics()
	s.batch = newBatcher(p, len(info.Classes), cfg, s.metrics, log)
	s.metrics.registerQueue(s.batch)
	s.metrics.registerInFlight(&s.admission)
	s.handler = s.middleware(s.routes())
	s.ready.Store(true)
	return s, nil
}

// ServeHTTP handles one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// SetReady sets what /readyz and /v2/health/ready answer. Serve turns
// readiness off when shutdown begins.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Close stops the micro-batcher; requests still waiting for inference fail
// with 503. Serve calls it after draining.
func (s *Server) Close() { s.batch.close() }

// Serve answers HTTP requests on ln until ctx is cancelled, then shuts down
// gracefully: readiness turns false, the server keeps serving for
// Config.DrainDelay, stops accepting connections, waits up to
// Config.ShutdownTimeout for in-flight requests and finally stops the
// batcher. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	defer s.Close()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("serving", "addr", ln.Addr().String(), "model", s.info.Name, "arch", s.info.Arch,
		"max_batch", s.cfg.MaxBatch, "max_delay", s.cfg.MaxDelay, "queue", s.cfg.Queue, "max_in_flight", s.cfg.MaxInFlight)

	select {
	case err := <-errc:
		return fmt.Errorf("server: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.SetReady(false)
	s.log.Info("shutting down: readiness off, draining", "drain_delay", s.cfg.DrainDelay)
	if s.cfg.DrainDelay > 0 {
		t := time.NewTimer(s.cfg.DrainDelay)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			return fmt.Errorf("server: serving on %s: %w", ln.Addr(), err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		return fmt.Errorf("server: graceful shutdown did not finish within %v: %w", s.cfg.ShutdownTimeout, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: serving on %s: %w", ln.Addr(), err)
	}
	s.log.Info("shut down cleanly")
	return nil
}

// Run listens on cfg.Addr, serves p until ctx is cancelled and shuts down
// gracefully (see Server.Serve). started, if not nil, is called with the
// bound address once the listener is open, before the first request.
func Run(ctx context.Context, cfg Config, p Predictor, log *slog.Logger, started func(net.Addr)) error {
	s, err := New(cfg, p, log)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		s.Close()
		return fmt.Errorf("server: listening on %q: %w", s.cfg.Addr, err)
	}
	if started != nil {
		started(ln.Addr())
	}
	return s.Serve(ctx, ln)
}

// route is one endpoint: a ServeMux pattern and its handler.
type route struct {
	pattern string
	handler http.Handler
}

// routeTable lists every endpoint. Method-qualified patterns make the mux
// answer 405 for wrong methods, and r.Pattern gives metrics a bounded route
// label. Endpoints that decode images or run the model pass admission
// control (admit); probes, metrics and documentation never do, so a
// saturated server still reports its health. The OpenAPI test checks this table and the document agree.
func (s *Server) routeTable() []route {
	h := func(pattern string, f http.HandlerFunc) route { return route{pattern, f} }
	return []route{
		h("GET /{$}", s.handleIndex),
		h("GET /healthz", s.handleHealthz),
		h("GET /readyz", s.handleReadyz),
		{"GET /metrics", s.metrics.handler()},
		h("GET /openapi.json", s.handleOpenAPI),
		h("GET /docs", s.handleDocsRedirect),
		{"GET /docs/", s.docsHandler()},

		h("GET /image-view", s.admit(s.handleImageView)),
		h("GET /image-classify", s.admit(s.handleImageClassify)),
		h("POST /v1/classify", s.admit(s.handleClassify)),
		h("GET /v1/model", s.handleV1Model),

		h("GET /v2", s.handleV2Server),
		h("GET /v2/health/live", s.handleV2Live),
		h("GET /v2/health/ready", s.handleV2Ready),
		h("GET /v2/models/{name}", s.handleV2Model),
		h("GET /v2/models/{name}/ready", s.handleV2ModelReady),
		h("POST /v2/models/{name}/infer", s.admit(s.handleV2Infer)),
		h("GET /v2/models/{name}/versions/{version}", s.handleV2Model),
		h("GET /v2/models/{name}/versions/{version}/ready", s.handleV2ModelReady),
		h("POST /v2/models/{name}/versions/{version}/infer", s.admit(s.handleV2Infer)),
	}
}

// routes builds the mux from routeTable.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	for _, r := range s.routeTable() {
		mux.Handle(r.pattern, r.handler)
	}
	return mux
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
