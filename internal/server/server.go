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
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"

	"github.com/fashion-classifier/fashion/internal/fetch"
	"github.com/fashion-classifier/fashion/internal/imageprep"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/repository"
)

// Predictor is the model as the server sees it: a description and a batched
// forward pass, as predictor.Open returns it; tests use small fakes.
type Predictor = predictor.Predictor

// Config holds everything that tunes the server. DefaultConfig gives every
// field its default; New fills the fields left at zero from it, except
// MaxDelay and Fetch.MaxRedirects, whose zero means "never wait" and "no
// redirects". A few defaults are derived: Queue and MaxInFlight from
// MaxBatch and Workers, and MaxDecodes, BodyBudget and MaxConns from
// MemoryLimit (see sizeForMemory).
type Config struct {
	// Addr is the TCP address Run listens on.
	Addr string
	// GRPCAddr is the TCP address Run serves the Open Inference Protocol's
	// gRPC service on; empty means no gRPC (DefaultConfig has ":8081",
	// KServe's convention).
	GRPCAddr string
	// ModelName is the name under /v2/models/{name}.
	ModelName string
	// Version is reported by GET /v2 and in logs.
	Version string

	// MaxBatch is the most images one forward pass takes.
	MaxBatch int
	// MaxDelay is how long a forming batch may wait for more requests while
	// other requests are still being decoded; zero or negative means never
	// wait.
	MaxDelay time.Duration
	// Queue is the most images waiting for inference; a request that would
	// overflow it gets 503 with Retry-After at once, so overload costs
	// neither memory nor latency for the requests already accepted.
	// Zero means 4×MaxBatch: at most a few forward passes of waiting.
	Queue int
	// MaxInFlight is the most inference requests (POST /v1/classify, v2
	// infer, GET /image-classify and /image-view) decoding or waiting for
	// the model at once, counted per request whatever its number of
	// images. The slot is taken once the request's bytes are at hand (body
	// read, URLs fetched), so slow clients and slow URLs never hold one; a
	// request beyond it gets 503 with Retry-After. Zero means
	// MaxBatch×Workers, at most Queue: one full batch per worker is enough
	// to keep the model busy (throughput at 16 concurrent uploads already
	// equals the server's capacity), and every request admitted beyond that
	// would only wait, adding its share of a forward pass to everyone's
	// latency. Measured under 5× overload (bench/overload, MaxBatch 32,
	// Queue 64): 64 in flight gave an accepted p99 of 94 ms, 32 gave 31 ms
	// at the same throughput, 16 lost a fifth of it.
	MaxInFlight int
	// Workers is the number of goroutines running forward passes; one,
	// since a forward pass already uses every core for large batches.
	Workers int

	// MaxBody caps request bodies in bytes (413 beyond it).
	MaxBody int64
	// MaxPixels caps the decoded size of one image, checked before decoding.
	MaxPixels int
	// MaxImages caps the images of one batch request.
	MaxImages int
	// Fetch is the policy for URLs the server fetches. Its MaxBytes
	// defaults to MaxBody.
	Fetch fetch.Policy
	// MaxFetches is the most URL fetches in progress at once over all
	// requests; a fetch beyond it fails with 503 at once.
	MaxFetches int

	// MemoryLimit is the memory the process may use (see MemoryLimit); zero
	// means unknown. It sizes the defaults of the three budgets below.
	MemoryLimit int64
	// BodyBudget bounds the bytes of request bodies, multipart parts,
	// decoded base64 and fetched images held by all requests together, one
	// semaphore charged as bytes arrive. A request that would exceed it
	// gets 503 with Retry-After. Zero means derived from MemoryLimit.
	BodyBudget int64
	// MaxDecodes is the most images decoded at once (decoding is CPU bound
	// and its memory is the largest per image); others wait their turn
	// within their request's deadline. Zero means derived from MemoryLimit,
	// at most GOMAXPROCS.
	MaxDecodes int
	// MaxConns is the most connections kept open. Beyond it the connection
	// idle the longest is closed to make room, or the new one when every
	// connection is busy. Zero means derived from MemoryLimit.
	MaxConns int

	// CORSOrigins lists origins allowed to call the API from a browser; "*"
	// allows any. Empty means no CORS headers at all.
	CORSOrigins []string

	// RequestTimeout is the deadline of every request: it cancels fetches,
	// decoding and queued inference, and the request answers 504.
	RequestTimeout time.Duration
	// BodyTimeout bounds reading a request body, so a client trickling its
	// body is cut off (408) without holding anything but its bytes.
	BodyTimeout time.Duration
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout configure
	// the http.Server.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// DrainDelay is how long the server keeps serving with readiness false
	// before it stops accepting connections, so load balancers notice;
	// zero by default (Kubernetes deployments usually delay in preStop).
	DrainDelay time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after shutdown begins.
	ShutdownTimeout time.Duration

	// ModelRepository is a directory in Triton's layout,
	// DIR/NAME/VERSION/model.safetensors (or model.onnx) with an optional
	// DIR/NAME/config.json; its models are loaded in the background after
	// New, each warmed up before it is ready. Empty: only the predictor
	// given to New is served. The predictor is served as ModelName unless
	// the repository has a model of that name.
	ModelRepository string
	// RepositoryPoll re-scans the repository this often (0: never; Reload
	// and POST /v2/repository/* still work).
	RepositoryPoll time.Duration
	// OpenModel opens a repository version's file; default repository.Open.
	OpenModel func(context.Context, repository.Spec) (repository.Predictor, error)
	// WarmUp runs a forward pass at each batch size the batcher uses
	// (see warmUpSizes) before a model version is served. The zero value
	// skips it, for tests; fashion serve turns it on.
	WarmUp bool
	// Reload, if not nil, makes the server re-scan the repository and
	// re-read the token file on each value (fashion serve sends SIGHUP here).
	Reload <-chan struct{}

	// AuthTokenFile names a file of bearer tokens, one a line (blank lines
	// and lines starting with # ignored). When set, inference, model and
	// repository endpoints of both protocols need "Authorization: Bearer
	// TOKEN"; health, readiness, documentation and (unless AuthMetrics)
	// metrics stay open. Re-read on Reload.
	AuthTokenFile string
	// AuthMetrics puts /metrics behind the tokens too.
	AuthMetrics bool

	// RequestLog, if set, is a file ("-": standard output) that gets one
	// JSON line per sampled inference; see RequestLogEntry.
	RequestLog string
	// RequestLogSample is the fraction of inferences logged; default 1.
	RequestLogSample float64
	// RequestLogInputs adds the 28×28 model inputs to the log lines.
	RequestLogInputs bool
	// Stdout is where RequestLog "-" writes; default os.Stdout.
	Stdout io.Writer
}

// DefaultConfig returns the configuration "fashion serve" starts from: every
// default stated once, here.
func DefaultConfig() Config {
	return Config{
		Addr:              ":8080",
		GRPCAddr:          ":8081",
		ModelName:         "fashion-mnist",
		Version:           "dev",
		MaxBatch:          32,
		MaxDelay:          500 * time.Microsecond,
		Workers:           1,
		MaxBody:           10 << 20,
		MaxPixels:         imageprep.DefaultMaxPixels,
		MaxImages:         256,
		Fetch:             fetch.DefaultPolicy(),
		MaxFetches:        64,
		RequestTimeout:    30 * time.Second,
		BodyTimeout:       10 * time.Second,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		ShutdownTimeout:   30 * time.Second,
		WarmUp:            true,
		RequestLogSample:  1,
	}
}

// withDefaults returns c with every unset field taken from DefaultConfig or
// derived (see Config).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.ModelName == "" {
		c.ModelName = d.ModelName
	}
	if c.Version == "" {
		c.Version = d.Version
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = d.MaxBatch
	}
	if c.Queue <= 0 {
		c.Queue = 4 * c.MaxBatch
	}
	if c.Workers <= 0 {
		c.Workers = d.Workers
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = min(c.MaxBatch*c.Workers, c.Queue)
	}
	if c.MaxBody <= 0 {
		c.MaxBody = d.MaxBody
	}
	if c.MaxPixels <= 0 {
		c.MaxPixels = d.MaxPixels
	}
	if c.MaxImages <= 0 {
		c.MaxImages = d.MaxImages
	}
	if c.Fetch.MaxBytes <= 0 {
		c.Fetch.MaxBytes = c.MaxBody
	}
	if c.MaxFetches <= 0 {
		c.MaxFetches = d.MaxFetches
	}
	set(&c.RequestTimeout, d.RequestTimeout)
	set(&c.BodyTimeout, d.BodyTimeout)
	set(&c.ReadHeaderTimeout, d.ReadHeaderTimeout)
	set(&c.ReadTimeout, d.ReadTimeout)
	set(&c.WriteTimeout, d.WriteTimeout)
	set(&c.IdleTimeout, d.IdleTimeout)
	set(&c.ShutdownTimeout, d.ShutdownTimeout)
	if c.OpenModel == nil {
		c.OpenModel = repository.Open
	}
	if c.RequestLogSample == 0 {
		c.RequestLogSample = d.RequestLogSample
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	return c.sizeForMemory()
}

// Server is the classification service as an http.Handler. Create it with
// New; Serve runs it on a listener. A Server is single-use: once Serve (or
// Close) returns, its batcher is stopped.
type Server struct {
	cfg   Config
	log   *slog.Logger
	fetch *fetch.Client
	// repo holds every served model version; requests resolve their model
	// through it (withModel).
	repo *repository.Repository[*servedModel]
	// photoName, when set, is the model that answers the images of
	// requests naming no model unless they are dataset-like (the default
	// model, ModelName, answers those): New was given a predictor.Routed.
	photoName string
	tokens    *tokens
	reqlog    *requestLog
	// stop ends the repository's background loading and polling.
	stop     context.CancelFunc
	bg       sync.WaitGroup
	closeOne sync.Once
	// budget, fetches, inference and decodes are the admission stages'
	// bounds; see admission.go.
	budget    *byteBudget
	fetches   slots
	inference slots
	decodes   *semaphore.Weighted
	conns     *connLimiter
	metrics   *serverMetrics
	ready     atomic.Bool
	handler   http.Handler
	ids       requestIDs
}

// New builds a server for predictor p (nil is allowed with a
// ModelRepository that has ModelName). A *predictor.Routed is served as
// its two models: the benchmark model as ModelName, the photo model under
// its own name, and the images of requests that name no model are
// answered by the one For picks (see routeOf). It checks the model description,
// starts the micro-batcher, starts loading the repository in the background
// and returns the server ready to handle requests; readiness waits for the
// default model. Call Close (or Serve, which closes it) to stop.
func New(cfg Config, p Predictor, log *slog.Logger) (*Server, error) {
	if p == nil && cfg.ModelRepository == "" {
		return nil, errors.New("server: no predictor")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	for _, o := range cfg.CORSOrigins {
		if o == "" {
			return nil, errors.New("server: empty CORS origin")
		}
	}
	if cfg.ModelRepository != "" {
		if st, err := os.Stat(cfg.ModelRepository); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("server: model repository %q is not a directory", cfg.ModelRepository)
		}
	}
	s := &Server{
		cfg:   cfg,
		log:   log,
		fetch: fetch.New(cfg.Fetch),
		ids:   newRequestIDs(),
	}
	var err error
	if s.tokens, err = loadTokens(cfg.AuthTokenFile); err != nil {
		return nil, err
	}
	if s.reqlog, err = openRequestLog(cfg, cfg.Stdout); err != nil {
		return nil, err
	}
	s.budget = newByteBudget(cfg.BodyBudget)
	s.fetches.max = int64(cfg.MaxFetches)
	s.inference.max = int64(cfg.MaxInFlight)
	s.decodes = semaphore.NewWeighted(int64(cfg.MaxDecodes))
	s.conns = newConnLimiter(cfg.MaxConns)
	s.metrics = newServerMetrics()
	s.repo = repository.New(cfg.ModelRepository, s.loadVersion, log)
	var photo Predictor
	if r, ok := p.(*predictor.Routed); ok {
		p, photo = r.Benchmark, r.Photo
	}
	inRepository := func(name string) bool {
		_, err := os.Stat(filepath.Join(cfg.ModelRepository, name))
		return cfg.ModelRepository != "" && err == nil
	}
	if p != nil && !inRepository(cfg.ModelName) {
		m, err := s.newServedModel(context.Background(), cfg.ModelName, 1, p)
		if err != nil {
			s.reqlog.close()
			return nil, err
		}
		s.repo.AddStatic(cfg.ModelName, 1, m)
		// The photo model comes with the benchmark model it pairs with: a
		// repository model that replaces the default answers everything.
		if photo != nil {
			name := photo.Info().Name
			if name == cfg.ModelName {
				s.repo.Close()
				s.reqlog.close()
				return nil, fmt.Errorf("server: the photo model is named %q like the default model", name)
			}
			if !inRepository(name) {
				pm, err := s.newServedModel(context.Background(), name, 1, photo)
				if err != nil {
					s.repo.Close()
					s.reqlog.close()
					return nil, err
				}
				s.repo.AddStatic(name, 1, pm)
			}
			s.photoName = name
		}
	}
	s.metrics.registerQueue(s.queueTotals)
	s.metrics.registerAdmission(s)
	s.handler = s.middleware(jsonRouterErrors(s.routes()))
	s.ready.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.bg.Go(func() { s.background(ctx) })
	return s, nil
}

// background loads the repository, then re-scans it every RepositoryPoll
// and reloads on each Reload value until ctx ends.
func (s *Server) background(ctx context.Context) {
	if s.cfg.ModelRepository != "" {
		if err := s.repo.Scan(ctx); err != nil {
			s.log.Warn("model repository: some models did not load", "error", err)
		}
		s.log.Info("model repository loaded", "dir", s.cfg.ModelRepository, "models", s.repo.Names())
	}
	var tick <-chan time.Time
	if s.cfg.RepositoryPoll > 0 && s.cfg.ModelRepository != "" {
		t := time.NewTicker(s.cfg.RepositoryPoll)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if err := s.repo.Scan(ctx); err != nil {
				s.log.Warn("model repository re-scan", "error", err)
			}
		case <-s.cfg.Reload:
			s.Reload(ctx)
		}
	}
}

// Reload re-scans the model repository and re-reads the token file; errors
// are logged and leave the previous state in place.
func (s *Server) Reload(ctx context.Context) {
	s.log.Info("reloading: re-scanning the model repository and re-reading tokens")
	if err := s.repo.Scan(ctx); err != nil {
		s.log.Warn("model repository re-scan", "error", err)
	}
	if err := s.tokens.reload(); err != nil {
		s.log.Warn("re-reading the token file; keeping the previous tokens", "error", err)
	}
}

// ServeHTTP handles one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// SetReady sets what /readyz and /v2/health/ready answer. Serve turns
// readiness off when shutdown begins. Readiness also waits for the default
// model (ModelName) to be loaded.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// isReady reports whether the server takes traffic: not shutting down and
// the default model ready.
func (s *Server) isReady() bool { return s.ready.Load() && s.repo.Ready(s.cfg.ModelName) }

// Close stops background loading and every model version's micro-batcher;
// requests still waiting for inference fail with 503. Serve calls it after
// draining.
func (s *Server) Close() {
	s.closeOne.Do(func() {
		s.stop()
		s.bg.Wait()
		s.repo.Close()
		s.reqlog.close()
	})
}

// Serve answers HTTP requests on ln until ctx is cancelled, then shuts down
// gracefully: readiness turns false, the server keeps serving for
// Config.DrainDelay, stops accepting connections, waits up to
// Config.ShutdownTimeout for in-flight requests and finally stops the
// batchers. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.ServeWithGRPC(ctx, ln, nil)
}

// ServeWithGRPC is Serve that also answers the Open Inference Protocol's
// gRPC service on grpcLn (nil: none). Both shut down together; in-flight
// gRPC calls finish (GracefulStop) within the same ShutdownTimeout.
func (s *Server) ServeWithGRPC(ctx context.Context, ln, grpcLn net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ConnState:         s.conns.hook,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	defer s.Close()
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(ln) }()
	var gs interface {
		GracefulStop()
		Stop()
	}
	if grpcLn != nil {
		g := s.NewGRPCServer()
		gs = g
		go func() {
			// A shutdown that comes before Serve has begun makes Serve
			// return ErrServerStopped (and close the listener): that is
			// the stop we asked for, not a failure to serve.
			if err := g.Serve(grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("gRPC: %w", err)
			}
		}()
		s.log.Info("serving gRPC", "addr", grpcLn.Addr().String())
	}
	s.log.Info("serving", "addr", ln.Addr().String(), "default_model", s.cfg.ModelName,
		"model_repository", s.cfg.ModelRepository, "max_batch", s.cfg.MaxBatch, "max_delay", s.cfg.MaxDelay, "queue", s.cfg.Queue, "max_in_flight", s.cfg.MaxInFlight,
		"request_timeout", s.cfg.RequestTimeout, "body_timeout", s.cfg.BodyTimeout)
	s.logBudget()

	select {
	case err := <-errc:
		if gs != nil {
			gs.Stop()
		}
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
			if gs != nil {
				gs.Stop()
			}
			return fmt.Errorf("server: serving on %s: %w", ln.Addr(), err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	grpcDone := make(chan struct{})
	go func() {
		defer close(grpcDone)
		if gs == nil {
			return
		}
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			gs.Stop()
		}
	}()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		<-grpcDone
		return fmt.Errorf("server: graceful shutdown did not finish within %v: %w", s.cfg.ShutdownTimeout, err)
	}
	<-grpcDone
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: serving on %s: %w", ln.Addr(), err)
	}
	s.log.Info("shut down cleanly")
	return nil
}

// Run listens on cfg.Addr (and cfg.GRPCAddr, if set), serves p until ctx is
// cancelled and shuts down gracefully (see Server.ServeWithGRPC). started,
// if not nil, is called with the bound HTTP address once the listeners are
// open, before the first request.
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
	var grpcLn net.Listener
	if s.cfg.GRPCAddr != "" {
		if grpcLn, err = lc.Listen(ctx, "tcp", s.cfg.GRPCAddr); err != nil {
			ln.Close()
			s.Close()
			return fmt.Errorf("server: listening for gRPC on %q: %w", s.cfg.GRPCAddr, err)
		}
	}
	if started != nil {
		started(ln.Addr())
	}
	return s.ServeWithGRPC(ctx, ln, grpcLn)
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
	// p is a protected route: behind the bearer tokens, when configured.
	p := func(pattern string, f http.HandlerFunc) route { return route{pattern, s.auth(f)} }
	var metrics http.Handler = s.metrics.handler()
	if s.cfg.AuthMetrics {
		metrics = s.auth(metrics)
	}
	return []route{
		h("GET /{$}", s.handleIndex),
		h("GET /healthz", s.handleHealthz),
		h("GET /readyz", s.handleReadyz),
		{"GET /metrics", metrics},
		h("GET /openapi.json", s.handleOpenAPI),
		h("GET /docs", s.handleDocsRedirect),
		{"GET /docs/", s.docsHandler()},
		h("GET /samples/{name}", s.handleSample),

		p("GET /image-view", s.admit(s.handleImageView)),
		p("GET /image-classify", s.withModel(s.admit(s.handleImageClassify))),
		p("POST /v1/classify", s.withModel(s.admit(s.handleClassify))),
		p("GET /v1/model", s.withModel(s.handleV1Model)),

		h("GET /v2", s.handleV2Server),
		h("GET /v2/health/live", s.handleV2Live),
		h("GET /v2/health/ready", s.handleV2Ready),
		p("GET /v2/models/{name}", s.withModel(s.handleV2Model)),
		p("GET /v2/models/{name}/ready", s.handleV2ModelReady),
		p("POST /v2/models/{name}/infer", s.withModel(s.admit(s.handleV2Infer))),
		p("GET /v2/models/{name}/versions/{version}", s.withModel(s.handleV2Model)),
		p("GET /v2/models/{name}/versions/{version}/ready", s.handleV2ModelReady),
		p("POST /v2/models/{name}/versions/{version}/infer", s.withModel(s.admit(s.handleV2Infer))),

		p("POST /v2/repository/index", s.handleRepositoryIndex),
		p("POST /v2/repository/models/{name}/load", s.handleRepositoryLoad),
		p("POST /v2/repository/models/{name}/unload", s.handleRepositoryUnload),
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

// jsonRouterErrors serves mux, answering the requests no route matches with
// the mux's 404 or 405 (and its Allow header) as a JSON error like every
// other error.
func jsonRouterErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			w = &jsonErrorWriter{ResponseWriter: w, r: r}
		}
		mux.ServeHTTP(w, r)
	})
}

// jsonErrorWriter turns the mux's plain-text 404 and 405 into JSON errors.
type jsonErrorWriter struct {
	http.ResponseWriter
	r       *http.Request
	written bool
}

func (w *jsonErrorWriter) WriteHeader(code int) {
	if w.written {
		return
	}
	w.written = true
	msg := fmt.Sprintf("no endpoint at %s; see /openapi.json", w.r.URL.Path)
	if code == http.StatusMethodNotAllowed {
		msg = fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", w.r.Method, w.r.URL.Path, w.Header().Get("Allow"))
	} else if code != http.StatusNotFound {
		msg = http.StatusText(code)
	}
	w.Header().Del("X-Content-Type-Options")
	writeError(w.ResponseWriter, code, msg)
}

// Write drops the mux's plain-text body; WriteHeader wrote the JSON one.
func (w *jsonErrorWriter) Write(p []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	return len(p), nil
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	if !s.repo.Ready(s.cfg.ModelName) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "default model " + s.cfg.ModelName + " not ready"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
