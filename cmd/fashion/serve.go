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
	"github.com/fashion-classifier/fashion/internal/fetch"
	"github.com/fashion-classifier/fashion/internal/imageprep"
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
// (SIGINT/SIGTERM), then drains in-flight requests and exits.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	var (
		cfg            server.Config
		cidrs          prefixList
		hosts, origins stringList
		models         = addModelFlags(fs)
		logFormat      = fs.String("log-format", "text", "log format: text or json")
		logLevel       = fs.String("log-level", "info", "log level: debug, info, warn or error")
		fetchTimeout   = fs.Duration("fetch-timeout", 10*time.Second, "total time allowed for fetching one image URL")
		fetchRedirects = fs.Int("fetch-max-redirects", 3, "redirects followed when fetching an image URL (0: none)")
	)
	fs.StringVar(&cfg.Addr, "addr", "", "listen `address` (default :8080, or :$PORT when PORT is set)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", ":8081", "listen `address` of the Open Inference Protocol gRPC service (empty: no gRPC)")
	fs.IntVar(&cfg.MaxBatch, "max-batch", 32, "most images per forward pass")
	fs.DurationVar(&cfg.MaxDelay, "max-delay", 500*time.Microsecond, "longest a forming batch waits for more requests (0: never wait)")
	fs.IntVar(&cfg.Queue, "queue", 0, "most images waiting for inference before answering 503 (default 4×max-batch)")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", 0, "most inference requests served at once; beyond it 503 + Retry-After before reading the body (default: max-batch×workers, at most -queue)")
	fs.IntVar(&cfg.Workers, "workers", 1, "goroutines running forward passes")
	fs.Int64Var(&cfg.MaxBody, "max-body", 10<<20, "largest request body in bytes")
	fs.IntVar(&cfg.MaxPixels, "max-pixels", imageprep.DefaultMaxPixels, "largest image in pixels (width×height), checked before decoding")
	fs.IntVar(&cfg.MaxImages, "max-images", 256, "most images in one batch request")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", 0, "time to keep serving with readiness off before closing on shutdown")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "longest wait for in-flight requests on shutdown")
	fs.Var(&cidrs, "allow-fetch-cidr", "allow fetching from this address `range` even if private, e.g. 10.0.0.0/8 (repeatable)")
	fs.Var(&hosts, "allow-fetch-host", "only fetch from this `host` (repeatable; default any public host)")
	fs.Var(&origins, "cors-origin", "allow browser calls from this `origin`, or * (repeatable)")
	fs.StringVar(&cfg.ModelName, "model-name", "fashion-mnist", "serving `name` of the default model (the -model file, or a repository model of that name)")
	fs.StringVar(&cfg.ModelRepository, "model-repository", "", "serve the models of this `dir`ectory in Triton's layout, DIR/NAME/VERSION/model.safetensors or model.onnx, with optional DIR/NAME/config.json")
	fs.DurationVar(&cfg.RepositoryPoll, "repository-poll", 0, "re-scan -model-repository this often, e.g. 30s (0: only on SIGHUP and POST /v2/repository/…)")
	fs.BoolVar(&cfg.WarmUp, "warm-up", true, "run a forward pass at each batch size the batcher uses before a model serves")
	fs.StringVar(&cfg.AuthTokenFile, "auth-token-file", "", "require a bearer token from this `file` (one a line; re-read on SIGHUP) for inference, model and repository endpoints")
	fs.BoolVar(&cfg.AuthMetrics, "auth-metrics", false, "put /metrics behind -auth-token-file too")
	fs.StringVar(&cfg.RequestLog, "request-log", "", "append one JSON line per inference to this `file` (- for standard output)")
	fs.Float64Var(&cfg.RequestLogSample, "request-log-sample", 1, "fraction of inferences written to -request-log")
	fs.BoolVar(&cfg.RequestLogInputs, "request-log-inputs", false, "include the 28×28 model inputs (PNG data URLs) in -request-log lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; serve takes only flags", fs.Args())
	}
	if cfg.Addr == "" {
		cfg.Addr = ":8080"
		if port := os.Getenv("PORT"); port != "" {
			cfg.Addr = net.JoinHostPort("", port)
		}
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = -1 // server.Config reads 0 as "default"
	}
	if cfg.MaxBody <= 0 || cfg.MaxBatch <= 0 || cfg.Queue < 0 || cfg.MaxInFlight < 0 || cfg.MaxPixels <= 0 || cfg.MaxImages <= 0 || cfg.Workers <= 0 {
		return errors.New("-max-body, -max-batch, -max-pixels, -max-images and -workers must be positive, -queue and -max-inflight not negative")
	}
	if *fetchRedirects == 0 {
		*fetchRedirects = -1 // fetch.Policy reads 0 as "default"
	}
	cfg.Fetch = fetch.Policy{
		AllowCIDRs:   cidrs,
		AllowHosts:   hosts,
		MaxBytes:     cfg.MaxBody,
		Timeout:      *fetchTimeout,
		MaxRedirects: *fetchRedirects,
	}
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
	start := time.Now()
	clf, err := models.open()
	if err != nil {
		return fmt.Errorf("loading model: %w", err)
	}
	info := clf.Info()
	log.Info("model loaded", "name", info.Name, "arch", info.Arch, "source", info.Source,
		"sha256", info.SHA256, "test_accuracy", info.TestAccuracy, "took", time.Since(start))
	return server.Run(ctx, cfg, clf, log, func(a net.Addr) {
		fmt.Fprintf(stdout, "fashion serve: listening on %s (default model %s, %s)\n", a, cfg.ModelName, info.Arch)
	})
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
