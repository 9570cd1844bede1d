// Command load measures the classification service's throughput, latency,
// memory and cold start on this machine, and compares them with the figures
// of the stack it replaces (../../shared/bench/README.md in the workspace).
//
// It starts "fashion serve" on 127.0.0.1 (or uses -url, which must be a
// loopback URL), and a small image server on 127.0.0.2 for the
// /image-classify?url= and /image-view?url= scenarios. Each scenario is a
// keep-alive closed-loop run at fixed concurrency, bounded by -duration and
// -max-requests, after a -warmup that is not recorded. Every run starts a
// fresh server, so each run also measures the time from launch to the first
// successful /image-classify answer. It reports medians of -runs runs as a
// Markdown table on stdout (and in -md) and as JSON (-json).
//
// It also measures in-process batched inference (modelfile.Embedded() and
// Predict at batch 32 and 256), so that HTTP throughput can be stated as a
// fraction of what the model alone can do.
//
// Usage, from the repository root, on an otherwise idle machine:
//
//	go build -o /tmp/fashion-bench ./cmd/fashion
//	go run ./bench/load -bin /tmp/fashion-bench -md bench/load/RESULTS.md -json bench/load/results.json
//
// All traffic stays on loopback: targets are checked when parsed and again
// by the HTTP client's dialer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fashion-classifier/fashion/bench/load/loadgen"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// scenario is one row of the results table.
type scenario struct {
	name        string
	what        string
	concurrency int
	target      func(base, image string) loadgen.Target
}

var scenarios = []scenario{
	{"classify-url-c1", "GET /image-classify?url= (28×28 PNG from a loopback image server)", 1, classifyURL},
	{"classify-url-c16", "GET /image-classify?url= (28×28 PNG from a loopback image server)", 16, classifyURL},
	{"upload-c1", "POST /v1/classify, 28×28 PNG body", 1, upload},
	{"upload-c16", "POST /v1/classify, 28×28 PNG body", 16, upload},
	{"view-url-c16", "GET /image-view?url= (fetch, decode, re-encode PNG)", 16, viewURL},
}

func classifyURL(base, image string) loadgen.Target {
	return loadgen.Target{Name: "classify-url", URL: base + "/image-classify?url=" + url.QueryEscape(image)}
}

func viewURL(base, image string) loadgen.Target {
	return loadgen.Target{Name: "view-url", URL: base + "/image-view?url=" + url.QueryEscape(image)}
}

func upload(base, _ string) loadgen.Target {
	return loadgen.Target{Name: "upload", Method: "POST", URL: base + "/v1/classify", ContentType: "image/png", Body: loadgen.ItemPNG()}
}

// options are the command-line settings.
type options struct {
	bin, url         string
	pid              int
	runs             int
	duration, warmup time.Duration
	maxRequests      int
	only             string
	inferTime        time.Duration
	serverArgs       string
	jsonPath, mdPath string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "fashion binary to start (default: build ./cmd/fashion into a temporary directory)")
	flag.StringVar(&o.url, "url", "", "measure this already running loopback server instead of starting one (no cold-start figure)")
	flag.IntVar(&o.pid, "pid", 0, "with -url: process id of that server, for its memory figures")
	flag.IntVar(&o.runs, "runs", 3, "runs per scenario; medians are reported")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per scenario and run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unrecorded warm-up before each measurement")
	flag.IntVar(&o.maxRequests, "max-requests", 200_000, "most requests per measurement")
	flag.StringVar(&o.only, "scenarios", "", "comma-separated scenario names to run (default all)")
	flag.DurationVar(&o.inferTime, "infer-time", 2*time.Second, "time per in-process inference measurement (0: skip)")
	flag.StringVar(&o.serverArgs, "server-args", "", "extra flags for fashion serve, space-separated")
	flag.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.mdPath, "md", "", "also write the Markdown report to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// Report is the JSON form of the results.
type Report struct {
	Date       string           `json:"date"`
	Machine    string           `json:"machine"`
	Busy       string           `json:"busy_at_start"`
	Runs       int              `json:"runs"`
	Duration   string           `json:"duration_per_run"`
	Scenarios  []ScenarioResult `json:"scenarios"`
	ColdStarts []float64        `json:"cold_start_ms,omitempty"`
	IdleRSS    []int64          `json:"idle_rss_bytes,omitempty"`
	PeakRSS    int64            `json:"peak_rss_bytes,omitempty"`
	Inference  []InferResult    `json:"inference,omitempty"`
}

// ScenarioResult holds one scenario's runs and their medians.
type ScenarioResult struct {
	Name        string         `json:"name"`
	What        string         `json:"what"`
	Concurrency int            `json:"concurrency"`
	RPS         []float64      `json:"rps"`
	P50, P90    []float64      `json:"-"`
	P99         []float64      `json:"-"`
	Median      Medians        `json:"median"`
	Requests    int            `json:"requests"`
	Status      map[int]int    `json:"status"`
	Errors      map[string]int `json:"errors"`
	RSSAfter    []int64        `json:"rss_after_bytes,omitempty"`
	HWM         int64          `json:"peak_rss_bytes,omitempty"`
}

// Medians are a scenario's medians over runs.
type Medians struct {
	RPS   float64 `json:"rps"`
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
}

// InferResult is in-process inference throughput at one batch size.
type InferResult struct {
	Batch        int       `json:"batch"`
	ImagesPerSec []float64 `json:"images_per_sec"`
	Median       float64   `json:"median_images_per_sec"`
	// AllocPerCall is the heap allocated by one Predict call, in bytes:
	// garbage that sets how large the server's heap grows under load.
	AllocPerCall float64 `json:"alloc_bytes_per_call"`
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if o.runs < 1 || o.duration <= 0 || o.maxRequests < 1 {
		return errors.New("-runs, -duration and -max-requests must be positive")
	}
	if o.url != "" {
		if err := loadgen.CheckLoopback(o.url); err != nil {
			return err
		}
	}
	chosen, err := pick(o.only)
	if err != nil {
		return err
	}
	img, err := loadgen.StartImageServer("127.0.0.2", loadgen.ItemPNG(), "image/png")
	if err != nil {
		return err
	}
	defer img.Close()
	if o.url == "" && o.bin == "" {
		dir, err := os.MkdirTemp("", "fashion-load")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if o.bin, err = loadgen.BuildFashion(ctx, dir); err != nil {
			return err
		}
	}

	rep := &Report{
		Date:     time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Machine:  loadgen.Machine(),
		Busy:     loadgen.Busy(),
		Runs:     o.runs,
		Duration: o.duration.String(),
	}
	for _, sc := range chosen {
		rep.Scenarios = append(rep.Scenarios, ScenarioResult{Name: sc.name, What: sc.what, Concurrency: sc.concurrency,
			Status: map[int]int{}, Errors: map[string]int{}})
	}
	client := loadgen.NewClient(64)
	for r := range o.runs {
		if err := oneRun(ctx, o, r, chosen, img.URL, client, rep, stderr); err != nil {
			return fmt.Errorf("run %d: %w", r+1, err)
		}
	}
	for i := range rep.Scenarios {
		s := &rep.Scenarios[i]
		s.Median = Medians{RPS: loadgen.Median(s.RPS), P50ms: loadgen.Median(s.P50), P90ms: loadgen.Median(s.P90), P99ms: loadgen.Median(s.P99)}
	}
	if o.inferTime > 0 {
		fmt.Fprintln(stderr, "measuring in-process batched inference")
		if rep.Inference, err = measureInference(ctx, o.runs, o.inferTime); err != nil {
			return err
		}
	}

	md := markdown(rep)
	fmt.Fprint(stdout, md)
	if o.mdPath != "" {
		if err := os.WriteFile(o.mdPath, []byte(md), 0o644); err != nil {
			return fmt.Errorf("writing -md: %w", err)
		}
	}
	if o.jsonPath != "" {
		if err := loadgen.WriteJSON(o.jsonPath, rep); err != nil {
			return err
		}
	}
	return nil
}

// pick returns the scenarios named in a comma-separated list, or all.
func pick(list string) ([]scenario, error) {
	if list == "" {
		return scenarios, nil
	}
	var out []scenario
	for name := range strings.SplitSeq(list, ",") {
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == name })
		if i < 0 {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q", name)
		}
		out = append(out, scenarios[i])
	}
	return out, nil
}

// oneRun starts a server (unless -url), measures its cold start and runs
// every chosen scenario once, adding the figures to rep.
func oneRun(ctx context.Context, o options, r int, chosen []scenario, image string, client *http.Client, rep *Report, stderr io.Writer) error {
	base, pid := o.url, o.pid
	if base == "" {
		args := append([]string{"-allow-fetch-cidr", "127.0.0.0/8", "-log-level", "warn"}, strings.Fields(o.serverArgs)...)
		srv, err := loadgen.StartServer(o.bin, args...)
		if err != nil {
			return err
		}
		defer srv.Stop(15 * time.Second)
		cold, err := srv.WaitAnswer(ctx, client, classifyURL(srv.URL, image), 20*time.Second)
		if err != nil {
			return err
		}
		base, pid = srv.URL, srv.PID()
		rep.ColdStarts = append(rep.ColdStarts, loadgen.Ms(cold))
		fmt.Fprintf(stderr, "run %d: server pid %d answered %v after launch\n", r+1, pid, cold.Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond) // let start-up garbage settle before the idle figure
		if m, err := loadgen.ReadMemory(pid); err == nil {
			rep.IdleRSS = append(rep.IdleRSS, m.RSS)
		}
	}
	for i, sc := range chosen {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := loadgen.RunClosed(ctx, client, sc.target(base, image), loadgen.Closed{
			Concurrency: sc.concurrency, Warmup: o.warmup, Duration: o.duration, MaxRequests: o.maxRequests,
		})
		if err != nil {
			return err
		}
		st := loadgen.Summarize(res.OK)
		s := &rep.Scenarios[i]
		rps := float64(len(res.OK)) / res.Elapsed.Seconds()
		s.RPS = append(s.RPS, rps)
		s.P50 = append(s.P50, loadgen.Ms(st.P50))
		s.P90 = append(s.P90, loadgen.Ms(st.P90))
		s.P99 = append(s.P99, loadgen.Ms(st.P99))
		s.Requests += res.Sent
		for k, v := range res.Status {
			s.Status[k] += v
		}
		for k, v := range res.Errors {
			s.Errors[k] += v
		}
		if pid > 0 {
			if m, err := loadgen.ReadMemory(pid); err == nil {
				s.RSSAfter = append(s.RSSAfter, m.RSS)
				s.HWM = max(s.HWM, m.HWM)
				rep.PeakRSS = max(rep.PeakRSS, m.HWM)
			}
		}
		fmt.Fprintf(stderr, "run %d: %-17s %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  failed %d\n",
			r+1, sc.name, rps, loadgen.Ms(st.P50), loadgen.Ms(st.P99), res.Failed())
	}
	return nil
}

// measureInference times modelfile.Predict in this process at batch 32 (the
// server's default -max-batch) and 256, runs times each.
func measureInference(ctx context.Context, runs int, d time.Duration) ([]InferResult, error) {
	clf, err := modelfile.Embedded()
	if err != nil {
		return nil, fmt.Errorf("opening the embedded model: %w", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var out []InferResult
	for _, batch := range []int{32, 256} {
		x := make([]float32, batch*modelfile.Pixels)
		for i := range x {
			x[i] = rng.Float32()*3 - 0.8
		}
		if _, err := clf.Predict(x, batch); err != nil { // warm-up: packs weights, sizes buffers
			return nil, fmt.Errorf("predict at batch %d: %w", batch, err)
		}
		res := InferResult{Batch: batch}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := clf.Predict(x, batch); err != nil {
			return nil, fmt.Errorf("predict at batch %d: %w", batch, err)
		}
		runtime.ReadMemStats(&after)
		res.AllocPerCall = float64(after.TotalAlloc - before.TotalAlloc)
		for range runs {
			n := 0
			start := time.Now()
			for time.Since(start) < d && ctx.Err() == nil {
				if _, err := clf.Predict(x, batch); err != nil {
					return nil, fmt.Errorf("predict at batch %d: %w", batch, err)
				}
				n += batch
			}
			res.ImagesPerSec = append(res.ImagesPerSec, float64(n)/time.Since(start).Seconds())
		}
		res.Median = loadgen.Median(res.ImagesPerSec)
		out = append(out, res)
	}
	return out, nil
}

// Figures of the replaced stack (FastAPI + PyTorch MobileNetV3-small on
// uvicorn), measured on this kind of machine: ../../shared/bench/README.md.
const (
	refC16RPS   = 103
	refC16P99   = 341
	refC1RPS    = 116
	refC1P50    = 8.3
	refViewRPS  = 366
	refViewP99  = 101
	refColdMs   = 1540
	refRSSIdle  = "305 MiB"
	refRSSAfter = "322 MiB"
)

// markdown renders rep as the tables of docs/BENCHMARKS.md.
func markdown(rep *Report) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## HTTP load (bench/load)\n\n")
	p("%s; %s. Medians of %d runs of %s each after a warm-up, keep-alive closed-loop client, server, image server and load generator sharing the machine's cores on loopback. At the start: %s.\n\n", rep.Date, rep.Machine, rep.Runs, rep.Duration, rep.Busy)
	p("| scenario | what | concurrency | req/s | p50 ms | p90 ms | p99 ms | requests | non-2xx / errors | RSS after (MiB) |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, s := range rep.Scenarios {
		p("| %s | %s | %d | %.0f | %.2f | %.2f | %.2f | %d | %s | %s |\n", s.Name, s.What, s.Concurrency,
			s.Median.RPS, s.Median.P50ms, s.Median.P90ms, s.Median.P99ms, s.Requests, failures(s), mib(medianInt(s.RSSAfter)))
	}
	p("\n")
	if len(rep.ColdStarts) > 0 {
		p("Launch to first successful `/image-classify` answer: median %.0f ms (runs: %s). Idle RSS after start: median %s MiB; peak RSS (VmHWM) over all runs: %s MiB.\n\n",
			loadgen.Median(rep.ColdStarts), floats(rep.ColdStarts, "%.0f"), mib(medianInt(rep.IdleRSS)), mib(rep.PeakRSS))
	}
	if len(rep.Inference) > 0 {
		p("### In-process batched inference (modelfile.Predict, embedded model)\n\n| batch | images/s (median) | runs | heap allocated per call |\n|---:|---:|---|---:|\n")
		for _, in := range rep.Inference {
			p("| %d | %.0f | %s | %.1f MiB |\n", in.Batch, in.Median, floats(in.ImagesPerSec, "%.0f"), in.AllocPerCall/(1<<20))
		}
		p("\n")
		for _, s := range rep.Scenarios {
			if s.Concurrency == 16 && s.Name != "view-url-c16" {
				p("- %s: %.0f req/s = %.0f%% of batch-32 and %.0f%% of batch-256 in-process throughput.\n", s.Name, s.Median.RPS,
					100*s.Median.RPS/rep.Inference[0].Median, 100*s.Median.RPS/rep.Inference[len(rep.Inference)-1].Median)
			}
		}
		p("\n")
	}
	p("### Against the replaced stack and the targets (issue 3 item 5)\n\n")
	p("| figure | replaced stack | target | measured | met |\n|---|---:|---:|---:|---|\n")
	get := func(name string) *ScenarioResult {
		for i := range rep.Scenarios {
			if rep.Scenarios[i].Name == name {
				return &rep.Scenarios[i]
			}
		}
		return nil
	}
	row := func(figure string, ref, target string, got float64, format string, ok bool) {
		p("| %s | %s | %s | "+format+" | %s |\n", figure, ref, target, got, yes(ok))
	}
	if s := get("classify-url-c16"); s != nil {
		row("`/image-classify?url=` c16 req/s", fmt.Sprint(refC16RPS), "≥ 1,030", s.Median.RPS, "%.0f", s.Median.RPS >= 10*refC16RPS)
		row("`/image-classify?url=` c16 p99 ms", fmt.Sprint(refC16P99), "< 30", s.Median.P99ms, "%.1f", s.Median.P99ms < 30)
	}
	if s := get("upload-c16"); s != nil {
		row("`POST /v1/classify` c16 req/s", "–", "≥ 1,030", s.Median.RPS, "%.0f", s.Median.RPS >= 10*refC16RPS)
		row("`POST /v1/classify` c16 p99 ms", "–", "< 30", s.Median.P99ms, "%.1f", s.Median.P99ms < 30)
	}
	if s := get("classify-url-c1"); s != nil {
		row("`/image-classify?url=` c1 req/s", fmt.Sprint(refC1RPS), "–", s.Median.RPS, "%.0f", s.Median.RPS > refC1RPS)
		row("`/image-classify?url=` c1 p50 ms", fmt.Sprint(refC1P50), "< 2", s.Median.P50ms, "%.2f", s.Median.P50ms < 2)
	}
	if s := get("upload-c1"); s != nil {
		row("`POST /v1/classify` c1 p50 ms", "–", "< 2", s.Median.P50ms, "%.2f", s.Median.P50ms < 2)
	}
	if s := get("view-url-c16"); s != nil {
		row("`/image-view?url=` c16 req/s", fmt.Sprint(refViewRPS), "–", s.Median.RPS, "%.0f", s.Median.RPS > refViewRPS)
		row("`/image-view?url=` c16 p99 ms", fmt.Sprint(refViewP99), "–", s.Median.P99ms, "%.1f", s.Median.P99ms < refViewP99)
	}
	if rep.PeakRSS > 0 {
		row("peak RSS under load, MiB", refRSSIdle+" idle / "+refRSSAfter+" after", "< 100 MB (95.4 MiB)", float64(rep.PeakRSS)/(1<<20), "%.1f", rep.PeakRSS < 100e6)
	}
	if len(rep.ColdStarts) > 0 {
		c := loadgen.Median(rep.ColdStarts)
		row("launch → first answer, ms", fmt.Sprint(refColdMs), "< 200", c, "%.0f", c < 200)
	}
	p("\nReplaced stack: FastAPI 0.92 + uvicorn 0.17 + PyTorch 1.13 MobileNetV3-small, measured with wrk on the same kind of 2-core machine (workspace `shared/bench/README.md`).\n")
	return b.String()
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// failures lists non-2xx statuses and transport errors, or "0".
func failures(s ScenarioResult) string {
	var parts []string
	for code, n := range s.Status {
		if code < 200 || code > 299 {
			parts = append(parts, fmt.Sprintf("%d×%d", n, code))
		}
	}
	for kind, n := range s.Errors {
		parts = append(parts, fmt.Sprintf("%d×%s", n, kind))
	}
	if len(parts) == 0 {
		return "0"
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func medianInt(v []int64) int64 {
	f := make([]float64, len(v))
	for i, x := range v {
		f[i] = float64(x)
	}
	return int64(loadgen.Median(f))
}

func mib(b int64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(b)/(1<<20))
}

func floats(v []float64, format string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, ", ")
}
