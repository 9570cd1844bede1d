// Command vs-ort measures this project's inference against ONNX Runtime on
// the same ONNX file, on this machine, in one run.
//
// Three contenders run in turn, several rounds, in a different order each
// round (all six orders over six rounds): ONNX Runtime (onnxruntime-node driven by ort.js), our
// ONNX path (package onnx on the same file) and our native path (-native,
// by default model/vgg-w32.safetensors, our own VGG-w32 of the same
// architecture as the ONNX file, through its compiled network; the
// embedded default is a ResNet-20 and would not compare like with like:
// the out-of-distribution score that modelfile.Classifier adds
// to each prediction, which ONNX Runtime does not compute, is timed once
// apart). Each measures batch-1
// latency (milliseconds per call) and batch-256 throughput (images per
// second) with the same number of threads, after a pause that lets the
// previous contender's threads go idle. It prints the CPU, its
// features, the measured FP32 FMA peak, a table of medians and, as its
// last line, the medians as JSON:
//
//	{"ort_batch1_ms":…,"ours_batch1_ms":…,"ours_native_batch1_ms":…,"ort_batch256_img_s":…,"ours_batch256_img_s":…,"ours_native_batch256_img_s":…}
//
// With -int8 q.safetensors (the same ONNX file quantized by `fashion
// quantize -model FILE.onnx -out q.safetensors`) a fourth contender,
// ours_int8, runs in every round right after ours (the float32 ONNX path
// of the same file, so the two alternate), and the JSON gains
// "ours_int8_batch1_ms" and "ours_int8_batch256_img_s".
//
// ONNX Runtime is installed when missing with `npm install
// onnxruntime-node@1.30.0 --ignore-scripts` in a cache folder (-cache); the
// package bundles libonnxruntime.so. Without Node it says so and exits
// with status 1. Benchmark tooling only: nothing in the product depends on
// ONNX Runtime or Node.
//
//	go run ./bench/vs-ort                      # ../shared/models/vgg_w32_fmnist.onnx
//	go run ./bench/vs-ort -model m.onnx -rounds 7 -seconds 2
package main

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/cpu"

	"github.com/fashion-classifier/fashion/bench/load/loadgen"
	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx"
	opener "github.com/fashion-classifier/fashion/internal/predictor"
)

//go:embed ort.js
var ortScript []byte

// orders are the six orders of the three contenders, one per round in
// turn, so that over six rounds each contender follows each other one
// equally often: whatever a run leaves behind (ONNX Runtime's threads
// winding down, caches) weighs on all alike.
var orders = [][3]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {0, 2, 1}, {2, 1, 0}, {1, 0, 2}}

// settle is the pause before each measurement.
const settle = 300 * time.Millisecond

// ortVersion is the ONNX Runtime release measured against.
const ortVersion = "1.30.0"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vs-ort:", err)
		os.Exit(1)
	}
}

// config holds the command line.
type config struct {
	model    string
	threads  int
	rounds   int
	seconds  float64
	cache    string
	int8     string
	batches  []int
	peakOnly bool
	native   string
}

func parseFlags() (config, error) {
	c := config{batches: []int{1, 256}}
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		cacheDir = os.TempDir()
	}
	flag.StringVar(&c.model, "model", upwards("../shared/models/vgg_w32_fmnist.onnx"), "ONNX model file")
	flag.StringVar(&c.native, "native", upwards("model/vgg-w32.safetensors"), "our model `file` of the ONNX file's architecture, for the contender ours_native")
	flag.IntVar(&c.threads, "threads", 2, "threads for each contender (ONNX Runtime intra-op threads, our GOMAXPROCS)")
	flag.IntVar(&c.rounds, "rounds", 6, "rounds; the figures are medians over rounds (6 runs every order once)")
	flag.Float64Var(&c.seconds, "seconds", 1, "seconds of each measurement")
	flag.StringVar(&c.int8, "int8", "", "int8 model `file` quantized from -model by fashion quantize: adds the contender ours_int8")
	flag.StringVar(&c.cache, "cache", filepath.Join(cacheDir, "fashion-vs-ort"), "folder where onnxruntime-node is installed")
	flag.BoolVar(&c.peakOnly, "peak", false, "only measure and print the FP32 FMA peak (for bench/run)")
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", flag.Args())
	case c.threads < 1 || c.threads > 256:
		return c, fmt.Errorf("-threads %d: want 1 to 256", c.threads)
	case c.rounds < 1 || c.rounds > 100:
		return c, fmt.Errorf("-rounds %d: want 1 to 100", c.rounds)
	case !(c.seconds > 0 && c.seconds <= 60):
		return c, fmt.Errorf("-seconds %g: want more than 0, at most 60", c.seconds)
	}
	return c, nil
}

// upwards returns rel joined to the nearest of the working directory and
// its parents where that path exists (rel itself if none does), so that
// the defaults work from anywhere in the repository.
func upwards(rel string) string {
	dir, err := os.Getwd()
	if err != nil {
		return rel
	}
	for {
		if p := filepath.Join(dir, rel); fileExists(p) {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return rel
		}
		dir = parent
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// predictor is what both of our paths provide.
type predictor interface {
	Predict(x []float32, n int) ([]float32, error)
}

// contender is one thing being measured: measure runs batch b for about
// secs seconds and returns the calls made and the time they took.
type contender struct {
	name    string
	measure func(b int, secs float64) (calls int, elapsed time.Duration, err error)
}

func run() error {
	cfg, err := parseFlags()
	if err != nil {
		return err
	}
	if !cfg.peakOnly && !fileExists(cfg.model) {
		return fmt.Errorf("model %s not found (-model)", cfg.model)
	}
	runtime.GOMAXPROCS(cfg.threads)
	printMachine()
	peak := measurePeak(cfg.threads)
	if peak > 0 {
		fmt.Printf("FP32 FMA peak (%d threads, %s, best of 5): %.1f GFLOP/s\n", cfg.threads, peakLoop(), peak/1e9)
	}
	if cfg.peakOnly {
		return nil
	}
	fmt.Printf("threads: %d each; rounds: %d of %gs per measurement; model: %s\n", cfg.threads, cfg.rounds, cfg.seconds, cfg.model)

	ort, err := startORT(cfg)
	if err != nil {
		return err
	}
	defer ort.close()

	opened, err := opener.Open(context.Background(), cfg.model, opener.Options{})
	if err != nil {
		return err
	}
	onnxModel, ok := opened.(*onnx.Model)
	if !ok {
		return fmt.Errorf("%s is not an ONNX model", cfg.model)
	}
	openedNative, err := opener.Open(context.Background(), cfg.native, opener.Options{})
	if err != nil {
		return fmt.Errorf("-native: %w", err)
	}
	native, ok := openedNative.(*modelfile.Classifier)
	if !ok {
		return fmt.Errorf("-native %s is not one of our model files", cfg.native)
	}
	if native.HasOOD() {
		fmt.Println("ours_native: " + cfg.native + "'s compiled network (infer.Predictor.Predict); Classifier.Predict also computes an out-of-distribution score per image, which ONNX Runtime does not, and is timed apart below")
	}
	contenders := []contender{
		{"ort", ort.measure},
		{"ours", ourMeasure(onnxModel)},
		{"ours_native", ourMeasure(native.Predictor)},
	}
	// after[i] runs right after contender i in every round: the int8
	// model after the float32 ONNX path it was quantized from.
	after := map[int]contender{}
	keys := []string{"ort_batch1_ms", "ours_batch1_ms", "ours_native_batch1_ms", "ort_batch256_img_s", "ours_batch256_img_s", "ours_native_batch256_img_s"}
	measured := contenders
	if cfg.int8 != "" {
		q, err := opener.Open(context.Background(), cfg.int8, opener.Options{})
		if err != nil {
			return fmt.Errorf("-int8: %w", err)
		}
		if p := q.Info().Precision; p != modelfile.PrecisionInt8 {
			return fmt.Errorf("-int8 %s has precision %s", cfg.int8, p)
		}
		fmt.Printf("ours_int8: %s, run right after ours in every round\n", cfg.int8)
		after[1] = contender{"ours_int8", ourMeasure(q)}
		measured = append(slices.Clone(contenders), after[1])
		keys = append(keys, "ours_int8_batch1_ms", "ours_int8_batch256_img_s")
	}

	// results[contender][batch] holds one figure per round: ms per call
	// for batch 1, images per second otherwise.
	results := make(map[string]map[int][]float64)
	for _, c := range measured {
		results[c.name] = make(map[int][]float64)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tcontender\tbatch 1 ms\tbatch 256 img/s\t")
	for r := range cfg.rounds {
		for i := range contenders {
			k := orders[r%len(orders)][i]
			round := []contender{contenders[k]}
			if c, ok := after[k]; ok {
				round = append(round, c)
			}
			for _, c := range round {
				var row []string
				for _, b := range cfg.batches {
					// Let the previous contender's threads go idle first: ONNX
					// Runtime's intra-op threads spin for a while after a run,
					// which would slow whoever comes next.
					time.Sleep(settle)
					calls, el, err := c.measure(b, cfg.seconds)
					if err != nil {
						return fmt.Errorf("%s, batch %d: %w", c.name, b, err)
					}
					v := figure(b, calls, el)
					results[c.name][b] = append(results[c.name][b], v)
					row = append(row, fmt.Sprintf("%.3f", v))
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t\n", r+1, c.name, strings.Join(row, "\t"))
			}
		}
	}
	fmt.Fprintln(tw, "\t\t\t\t")
	out := make(map[string]float64)
	flops := float64(flopsPerImage(onnxModel))
	for _, c := range measured {
		b1, b256 := loadgen.Median(results[c.name][1]), loadgen.Median(results[c.name][256])
		out[c.name+"_batch1_ms"] = round3(b1)
		out[c.name+"_batch256_img_s"] = round3(b256)
		fmt.Fprintf(tw, "median\t%s\t%.3f\t%.0f\t\n", c.name, b1, b256)
	}
	tw.Flush()
	if native.HasOOD() {
		withOOD := ourMeasure(native)
		var fig []float64
		for _, b := range cfg.batches {
			time.Sleep(settle)
			calls, el, err := withOOD(b, cfg.seconds)
			if err != nil {
				return fmt.Errorf("ours_native with OOD, batch %d: %w", b, err)
			}
			fig = append(fig, figure(b, calls, el))
		}
		fmt.Printf("ours_native with its out-of-distribution score (Classifier.Predict, one measurement): batch 1 %.3f ms, batch 256 %.0f img/s\n", fig[0], fig[1])
	}
	o1, o256 := out["ort_batch1_ms"], out["ort_batch256_img_s"]
	for _, c := range measured[1:] {
		name := c.name
		fmt.Printf("%s vs ONNX Runtime: batch 1 latency %.2f× ORT's; batch 256 throughput %.2f× ORT's\n",
			name, out[name+"_batch1_ms"]/o1, out[name+"_batch256_img_s"]/o256)
	}
	if flops > 0 {
		line := fmt.Sprintf("batch 256 at %.1f MFLOP/image: ort %.0f, ours %.0f, ours_native %.0f GFLOP/s",
			flops/1e6, o256*flops/1e9, out["ours_batch256_img_s"]*flops/1e9, out["ours_native_batch256_img_s"]*flops/1e9)
		if peak > 0 {
			line += fmt.Sprintf(" (peak %.0f)", peak/1e9)
		}
		fmt.Println(line)
	}
	var js strings.Builder
	js.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			js.WriteString(",")
		}
		fmt.Fprintf(&js, "%q:%v", k, out[k])
	}
	js.WriteString("}")
	fmt.Println(js.String())
	return nil
}

// figure is ms per call for batch 1 and images per second otherwise.
func figure(b, calls int, el time.Duration) float64 {
	if b == 1 {
		return el.Seconds() * 1000 / float64(calls)
	}
	return float64(calls*b) / el.Seconds()
}

func round3(v float64) float64 {
	return float64(int64(v*1000+0.5)) / 1000
}

// ourMeasure measures one of our predictors on a random batch, warming it
// up on the first call for each batch size.
func ourMeasure(m predictor) func(b int, secs float64) (int, time.Duration, error) {
	inputs := make(map[int][]float32)
	return func(b int, secs float64) (int, time.Duration, error) {
		x, ok := inputs[b]
		if !ok {
			rng := rand.New(rand.NewPCG(1, uint64(b)))
			x = make([]float32, b*28*28)
			for i := range x {
				x[i] = rng.Float32()
			}
			inputs[b] = x
			for range 5 {
				if _, err := m.Predict(x, b); err != nil {
					return 0, 0, err
				}
			}
		}
		limit := time.Duration(secs * float64(time.Second))
		calls := 0
		t0 := time.Now()
		for {
			if _, err := m.Predict(x, b); err != nil {
				return 0, 0, err
			}
			calls++
			if el := time.Since(t0); el >= limit {
				return calls, el, nil
			}
		}
	}
}

// flopsPerImage is twice the multiply-adds per image of the model's
// convolutions and matrix products, or 0 when unknown.
func flopsPerImage(m *onnx.Model) int {
	return 2 * m.MACs()
}

// printMachine prints the CPU model and the features that matter to the
// kernels, detected at run time.
func printMachine() {
	name := "unknown"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				name = strings.TrimSpace(v)
				break
			}
		}
	}
	feats := []struct {
		name string
		has  bool
	}{
		{"AVX", cpu.X86.HasAVX}, {"AVX2", cpu.X86.HasAVX2}, {"FMA", cpu.X86.HasFMA},
		{"AVX-512F", cpu.X86.HasAVX512F}, {"AVX-512BW", cpu.X86.HasAVX512BW},
		{"AVX-512VNNI", cpu.X86.HasAVX512VNNI}, {"AVX-512BF16", cpu.X86.HasAVX512BF16},
		{"AVX-VNNI", cpu.X86.HasAVXVNNI},
	}
	var have, lack []string
	for _, f := range feats {
		if f.has {
			have = append(have, f.name)
		} else {
			lack = append(lack, f.name)
		}
	}
	fmt.Printf("date: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("cpu: %s, %d logical CPUs, %s/%s, %s\n", name, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Printf("cpu features: %s; without: %s; GEMM kernel: %s\n", strings.Join(have, " "), strings.Join(lack, " "), blas.KernelName())
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average: %s\n", strings.Join(strings.Fields(string(data))[:3], " "))
	}
}

// measurePeak returns the best of 5 FP32 FMA rates over threads
// goroutines, in FLOP/s, or 0 when this CPU has no AVX2 FMA loop.
func measurePeak(threads int) float64 {
	if _, ok := fmaStep(1); !ok {
		return 0
	}
	const iters = 20_000_000
	best := 0.0
	for range 5 {
		var wg sync.WaitGroup
		flops := make([]float64, threads)
		t0 := time.Now()
		for i := range threads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				flops[i], _ = fmaStep(iters)
			}()
		}
		wg.Wait()
		total := 0.0
		for _, f := range flops {
			total += f
		}
		best = max(best, total/time.Since(t0).Seconds())
	}
	return best
}

// ortProcess is a running ort.js.
type ortProcess struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startORT installs onnxruntime-node into cfg.cache when it is missing and
// starts ort.js on the model.
func startORT(cfg config) (*ortProcess, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("Node.js (node) not found on PATH: it is needed to run ONNX Runtime (Debian: apt-get install nodejs npm)")
	}
	pkg := filepath.Join(cfg.cache, "node_modules", "onnxruntime-node", "package.json")
	if !installed(pkg) {
		npm, err := exec.LookPath("npm")
		if err != nil {
			return nil, errors.New("npm not found on PATH: it is needed to install onnxruntime-node (Debian: apt-get install npm)")
		}
		if err := os.MkdirAll(cfg.cache, 0o755); err != nil {
			return nil, fmt.Errorf("cache folder: %w", err)
		}
		fmt.Printf("installing onnxruntime-node@%s into %s\n", ortVersion, cfg.cache)
		cmd := exec.Command(npm, "install", "--prefix", cfg.cache, "--no-audit", "--no-fund", "--ignore-scripts", "onnxruntime-node@"+ortVersion)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("npm install onnxruntime-node@%s: %w", ortVersion, err)
		}
		if !installed(pkg) {
			return nil, fmt.Errorf("npm install left no onnxruntime-node@%s in %s", ortVersion, cfg.cache)
		}
	}
	script := filepath.Join(cfg.cache, "ort.js")
	if err := os.WriteFile(script, ortScript, 0o644); err != nil {
		return nil, fmt.Errorf("writing ort.js: %w", err)
	}
	model, err := filepath.Abs(cfg.model)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, script, model, fmt.Sprint(cfg.threads))
	cmd.Dir = cfg.cache
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting node: %w", err)
	}
	p := &ortProcess{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
	var hello struct {
		Ready   bool   `json:"ready"`
		Version string `json:"version"`
	}
	if err := p.readJSON(&hello); err != nil || !hello.Ready {
		p.close()
		return nil, fmt.Errorf("ONNX Runtime did not start: %v", err)
	}
	fmt.Printf("ONNX Runtime: onnxruntime-node %s (CPU execution provider)\n", hello.Version)
	return p, nil
}

// installed reports whether pkg is onnxruntime-node's package.json at the
// wanted version.
func installed(pkg string) bool {
	data, err := os.ReadFile(pkg)
	if err != nil {
		return false
	}
	var p struct {
		Version string `json:"version"`
	}
	return json.Unmarshal(data, &p) == nil && p.Version == ortVersion
}

func (p *ortProcess) readJSON(v any) error {
	if !p.out.Scan() {
		if err := p.out.Err(); err != nil {
			return err
		}
		return errors.New("ort.js exited")
	}
	return json.Unmarshal(p.out.Bytes(), v)
}

func (p *ortProcess) measure(b int, secs float64) (int, time.Duration, error) {
	if _, err := fmt.Fprintf(p.in, "%d %g\n", b, secs); err != nil {
		return 0, 0, err
	}
	var r struct {
		Batch   int     `json:"batch"`
		Runs    int     `json:"runs"`
		Seconds float64 `json:"seconds"`
	}
	if err := p.readJSON(&r); err != nil {
		return 0, 0, err
	}
	if r.Batch != b || r.Runs < 1 || !(r.Seconds > 0) {
		return 0, 0, fmt.Errorf("unexpected answer from ort.js: %+v", r)
	}
	return r.Runs, time.Duration(r.Seconds * float64(time.Second)), nil
}

func (p *ortProcess) close() {
	p.in.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}
