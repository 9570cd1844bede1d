package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fashion-classifier/fashion/internal/buildinfo"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/server"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// prefixList is a repeatable CIDR flag; a bare address means that one host.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(v string) error {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		a, aerr := netip.ParseAddr(v)
		if aerr != nil {
			return fmt.Errorf("%q is not a CIDR range such as 10.0.0.0/8: %w", v, err)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	*l = append(*l, p.Masked())
	return nil
}

// runServe runs the HTTP classification service until ctx is cancelled
// (SIGINT/SIGTERM), then drains in-flight requests and exits. Its flags are
// server.DefaultConfig's fields, defaults included.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	cfg := server.DefaultConfig()
	if port := os.Getenv("PORT"); port != "" {
		cfg.Addr = net.JoinHostPort("", port)
	}
	var (
		cidrs          prefixList
		hosts, origins stringList
		models         = addModelFlags(fs).addTTAFlag(fs)
		logFormat      = fs.String("log-format", "text", "log format: text or json")
		logLevel       = fs.String("log-level", "info", "log level: debug, info, warn or error")
	)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen `address` (:$PORT when PORT is set)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "listen `address` of the Open Inference Protocol gRPC service (empty: no gRPC)")
	fs.IntVar(&cfg.MaxBatch, "max-batch", cfg.MaxBatch, "most images per forward pass")
	fs.DurationVar(&cfg.MaxDelay, "max-delay", cfg.MaxDelay, "longest a forming batch waits for more requests (0: never wait)")
	fs.IntVar(&cfg.Queue, "queue", cfg.Queue, "most images waiting for inference before answering 503 (0: 4×max-batch)")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", cfg.MaxInFlight, "most inference requests decoding or waiting for the model at once; beyond it 503 + Retry-After (0: max-batch×workers, at most -queue)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "goroutines running forward passes")
	fs.Int64Var(&cfg.MaxBody, "max-body", cfg.MaxBody, "largest request body in bytes")
	fs.IntVar(&cfg.MaxPixels, "max-pixels", cfg.MaxPixels, "largest image in pixels (width×height), checked before decoding")
	fs.IntVar(&cfg.MaxImages, "max-images", cfg.MaxImages, "most images in one batch request")
	fs.Int64Var(&cfg.BodyBudget, "body-budget", cfg.BodyBudget, "most bytes of request bodies and fetched images held at once; beyond it 503 (0: from the memory limit)")
	fs.IntVar(&cfg.MaxDecodes, "max-decodes", cfg.MaxDecodes, "most images decoded at once (0: from the memory limit, at most the number of CPUs)")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "most open connections; beyond it the longest-idle one is closed (0: from the memory limit)")
	fs.IntVar(&cfg.MaxFetches, "max-fetches", cfg.MaxFetches, "most image URL fetches in progress at once; beyond it 503")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "deadline of every request: cancels fetches, decoding and queued inference (504)")
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", cfg.BodyTimeout, "longest time to receive a request body (408 beyond it)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "how long an idle keep-alive connection stays open")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", cfg.DrainDelay, "time to keep serving with readiness off before closing on shutdown")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "longest wait for in-flight requests on shutdown")
	fs.DurationVar(&cfg.Fetch.Timeout, "fetch-timeout", cfg.Fetch.Timeout, "total time allowed for fetching one image URL")
	fs.IntVar(&cfg.Fetch.MaxRedirects, "fetch-max-redirects", cfg.Fetch.MaxRedirects, "redirects followed when fetching an image URL (0: none)")
	fs.Var(&cidrs, "allow-fetch-cidr", "allow fetching from this address `range` even if private, e.g. 10.0.0.0/8 (repeatable)")
	fs.Var(&hosts, "allow-fetch-host", "only fetch from this `host` (repeatable; default any public host)")
	fs.Var(&origins, "cors-origin", "allow browser calls from this `origin`, or * (repeatable)")
	fs.StringVar(&cfg.ModelName, "model-name", cfg.ModelName, "serving `name` of the default model (the -model file, or a repository model of that name)")
	fs.StringVar(&cfg.ModelRepository, "model-repository", "", "serve the models of this `dir`ectory in Triton's layout, DIR/NAME/VERSION/model.safetensors or model.onnx, with optional DIR/NAME/config.json")
	fs.DurationVar(&cfg.RepositoryPoll, "repository-poll", cfg.RepositoryPoll, "re-scan -model-repository this often, e.g. 30s (0: only on SIGHUP and POST /v2/repository/…)")
	fs.BoolVar(&cfg.WarmUp, "warm-up", cfg.WarmUp, "run a forward pass at each batch size the batcher uses before a model serves")
	fs.StringVar(&cfg.AuthTokenFile, "auth-token-file", "", "require a bearer token from this `file` (one a line; re-read on SIGHUP) for inference, model and repository endpoints")
	fs.BoolVar(&cfg.AuthMetrics, "auth-metrics", false, "put /metrics behind -auth-token-file too")
	fs.StringVar(&cfg.RequestLog, "request-log", "", "append one JSON line per inference to this `file` (- for standard output)")
	fs.Float64Var(&cfg.RequestLogSample, "request-log-sample", cfg.RequestLogSample, "fraction of inferences written to -request-log")
	fs.BoolVar(&cfg.RequestLogInputs, "request-log-inputs", false, "include the 28×28 model inputs (PNG data URLs) in -request-log lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; serve takes only flags", fs.Args())
	}
	if cfg.MaxBody <= 0 || cfg.MaxBatch <= 0 || cfg.MaxPixels <= 0 || cfg.MaxImages <= 0 || cfg.Workers <= 0 || cfg.MaxFetches <= 0 ||
		cfg.RequestTimeout <= 0 || cfg.BodyTimeout <= 0 || cfg.IdleTimeout <= 0 || cfg.Fetch.Timeout <= 0 {
		return errors.New("-max-body, -max-batch, -max-pixels, -max-images, -workers, -max-fetches and the timeouts must be positive")
	}
	if cfg.Queue < 0 || cfg.MaxInFlight < 0 || cfg.BodyBudget < 0 || cfg.MaxDecodes < 0 || cfg.MaxConns < 0 || cfg.Fetch.MaxRedirects < 0 {
		return errors.New("-queue, -max-inflight, -body-budget, -max-decodes, -max-conns and -fetch-max-redirects must not be negative")
	}
	if cfg.BodyBudget > 0 && cfg.BodyBudget < 2*cfg.MaxBody {
		return fmt.Errorf("-body-budget %d is less than twice -max-body %d, the most a max-size body holds while it is read", cfg.BodyBudget, cfg.MaxBody)
	}
	cfg.Fetch.AllowCIDRs = cidrs
	cfg.Fetch.AllowHosts = hosts
	cfg.Fetch.MaxBytes = cfg.MaxBody
	cfg.CORSOrigins = origins
	cfg.Version = buildinfo.Read().Version
	if !(cfg.RequestLogSample > 0 && cfg.RequestLogSample <= 1) {
		return fmt.Errorf("-request-log-sample %v: want a fraction in (0, 1]", cfg.RequestLogSample)
	}
	// SIGHUP re-scans the model repository and re-reads the token file.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	cfg.Reload = reload
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default: // a reload is already pending
				}
			}
		}
	}()

	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if _, err := server.SetMemoryLimit(); err != nil {
		log.Warn("could not derive GOMEMLIMIT from the cgroup", "error", err)
	}
	var source string
	cfg.MemoryLimit, source = server.MemoryLimit()
	log.Info("memory limit", "bytes", cfg.MemoryLimit, "source", source)
	start := time.Now()
	clf, err := models.open(ctx)
	if err != nil {
		return fmt.Errorf("loading model: %w", err)
	}
	info := clf.Info()
	for _, m := range predictor.Models(clf) {
		mi := m.Info()
		log.Info("model loaded", "name", mi.Name, "arch", mi.Arch, "source", mi.Source,
			"sha256", mi.SHA256, "test_accuracy", mi.TestAccuracy, "took", time.Since(start))
	}
	err = server.Run(ctx, cfg, clf, log, func(a net.Addr) {
		fmt.Fprintf(stdout, "fashion serve: listening on %s (default model %s, %s)\n", a, cfg.ModelName, info.Arch)
	})
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w\n(another process is listening there: stop it, or choose other ports with -addr or the PORT environment variable, e.g. -addr :8090, and -grpc-addr)", err)
	}
	return err
}

// newLogger builds the structured logger for -log-format and -log-level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}
