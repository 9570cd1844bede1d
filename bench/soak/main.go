// Command soak runs the classification service under steady, moderate load
// for a few minutes and fails if its goroutine count or resident memory
// keeps growing: the leak users of other model servers report as "memory
// that grows with requests and never comes back".
//
// It starts "fashion serve" on 127.0.0.1 (or uses -url, a loopback URL) and
// an image server on 127.0.0.2, then sends an open-loop mix at -rate
// requests per second in total for -duration: uploads, /image-classify and
// /image-view by URL, and two kinds of bad request (wrong Content-Type, a
// URL that answers 404), so error paths are soaked too. Every -sample it
// reads go_goroutines and process_resident_memory_bytes from /metrics.
// After -warmup, the median of the last third of the samples must not
// exceed the median of the first third by more than -max-growth (plus
// -goroutine-slack goroutines). Bounded in time; loopback only; not part of
// the default test run.
//
// Usage, from the repository root:
//
//	go run ./bench/soak -bin /tmp/fashion-bench -duration 3m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fashion-classifier/fashion/bench/load/loadgen"
)

type options struct {
	bin, url, serverArgs string
	duration, warmup     time.Duration
	sample               time.Duration
	rate                 float64
	maxGrowth            float64
	goroutineSlack       float64
	jsonPath             string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "fashion binary to start (default: build ./cmd/fashion into a temporary directory)")
	flag.StringVar(&o.url, "url", "", "soak this already running loopback server instead of starting one")
	flag.StringVar(&o.serverArgs, "server-args", "", "extra flags for fashion serve, space-separated")
	flag.DurationVar(&o.duration, "duration", 3*time.Minute, "length of the load (bounded: at most 1h)")
	flag.DurationVar(&o.warmup, "warmup", 20*time.Second, "first part of the load whose samples are not judged")
	flag.DurationVar(&o.sample, "sample", 5*time.Second, "time between samples of /metrics")
	flag.Float64Var(&o.rate, "rate", 200, "requests per second, over all request kinds")
	flag.Float64Var(&o.maxGrowth, "max-growth", 0.10, "largest allowed relative growth from the first to the last third")
	flag.Float64Var(&o.goroutineSlack, "goroutine-slack", 4, "goroutines allowed above the relative growth (connections come and go)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the report as JSON to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o, os.Stderr)
	if rep == nil {
		os.Exit(loadgen.Finish("soak", nil, "", false, o.jsonPath, err))
	}
	os.Exit(loadgen.Finish("soak", rep, rep.text(), rep.Pass, o.jsonPath, err))
}

// Sample is one reading of the server's metrics.
type Sample struct {
	AtS        float64 `json:"at_s"`
	Goroutines float64 `json:"goroutines"`
	RSS        float64 `json:"rss_bytes"`
}

// Report is what the soak run saw and concluded.
type Report struct {
	Date           string         `json:"date"`
	Machine        string         `json:"machine"`
	DurationS      float64        `json:"duration_s"`
	Rate           float64        `json:"rate"`
	Sent           int            `json:"sent"`
	Status         map[int]int    `json:"status"`
	Errors         map[string]int `json:"errors"`
	Samples        []Sample       `json:"samples"`
	FirstGoroutine float64        `json:"first_third_goroutines"`
	LastGoroutine  float64        `json:"last_third_goroutines"`
	FirstRSS       float64        `json:"first_third_rss_bytes"`
	LastRSS        float64        `json:"last_third_rss_bytes"`
	Problems       []string       `json:"problems"`
	Pass           bool           `json:"pass"`
}

func (r *Report) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %s; %s\n%.0f s at %.0f req/s: sent %d, statuses %v, errors %v\n", r.Date, r.Machine, r.DurationS, r.Rate, r.Sent, r.Status, r.Errors)
	fmt.Fprintf(&b, "%8s %11s %9s\n", "t (s)", "goroutines", "RSS MiB")
	for _, s := range r.Samples {
		fmt.Fprintf(&b, "%8.0f %11.0f %9.1f\n", s.AtS, s.Goroutines, s.RSS/(1<<20))
	}
	fmt.Fprintf(&b, "judged samples, first third → last third (medians): goroutines %.0f → %.0f, RSS %.1f → %.1f MiB\n",
		r.FirstGoroutine, r.LastGoroutine, r.FirstRSS/(1<<20), r.LastRSS/(1<<20))
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  FAIL %s\n", p)
	}
	if r.Pass {
		b.WriteString("soak: PASS\n")
	} else {
		b.WriteString("soak: FAIL\n")
	}
	return b.String()
}

func run(ctx context.Context, o options, log io.Writer) (*Report, error) {
	if o.duration <= 0 || o.duration > time.Hour || o.sample <= 0 || o.rate <= 0 || o.warmup >= o.duration {
		return nil, errors.New("need 0 < -duration ≤ 1h, -warmup < -duration, and positive -sample and -rate")
	}
	img, err := loadgen.StartImageServer("127.0.0.2", loadgen.ItemPNG(), "image/png")
	if err != nil {
		return nil, err
	}
	defer img.Close()
	base := o.url
	client := loadgen.NewClient(256)
	if base == "" {
		if o.bin == "" {
			dir, err := os.MkdirTemp("", "fashion-soak")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
			if o.bin, err = loadgen.BuildFashion(ctx, dir); err != nil {
				return nil, err
			}
		}
		args := append([]string{"-allow-fetch-cidr", "127.0.0.0/8", "-log-level", "error"}, strings.Fields(o.serverArgs)...)
		srv, err := loadgen.StartServer(o.bin, args...)
		if err != nil {
			return nil, err
		}
		defer srv.Stop(15 * time.Second)
		base = srv.URL
		if _, err := srv.WaitAnswer(ctx, client, loadgen.Target{Name: "healthz", URL: base + "/healthz"}, 20*time.Second); err != nil {
			return nil, err
		}
	} else if err := loadgen.CheckLoopback(base); err != nil {
		return nil, err
	}
	missing := strings.Replace(img.URL, "/item.png", "/missing.png", 1)
	png := loadgen.ItemPNG()
	// Each kind of request and the only status it may get.
	targets := []struct {
		loadgen.Target
		want int
	}{
		{loadgen.Target{Name: "upload", Method: "POST", URL: base + "/v1/classify", ContentType: "image/png", Body: png}, http.StatusOK},
		{loadgen.Target{Name: "classify-url", URL: base + "/image-classify?url=" + url.QueryEscape(img.URL)}, http.StatusOK},
		{loadgen.Target{Name: "view-url", URL: base + "/image-view?url=" + url.QueryEscape(img.URL)}, http.StatusOK},
		{loadgen.Target{Name: "wrong-type", Method: "POST", URL: base + "/v1/classify", ContentType: "text/plain", Body: []byte("not an image")}, http.StatusUnsupportedMediaType},
		{loadgen.Target{Name: "missing-url", URL: base + "/image-classify?url=" + url.QueryEscape(missing)}, http.StatusBadGateway},
	}
	rep := &Report{Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Machine: loadgen.Machine(),
		DurationS: o.duration.Seconds(), Rate: o.rate, Status: map[int]int{}, Errors: map[string]int{}}

	start := time.Now()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, t := range targets {
		wg.Go(func() {
			res, err := loadgen.RunOpen(ctx, client, t.Target, loadgen.Open{Rate: o.rate / float64(len(targets)), Duration: o.duration, MaxInFlight: 32})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %v", t.Name, err))
				return
			}
			rep.Sent += res.Sent
			for k, v := range res.Status {
				rep.Status[k] += v
				if k != t.want {
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %d answers with status %d, want only %d", t.Name, v, k, t.want))
				}
			}
			for k, v := range res.Errors {
				rep.Errors[k] += v
			}
			if res.Dropped > 0 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %d arrivals found all 32 slots busy", t.Name, res.Dropped))
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	scraper := loadgen.NewClient(1)
sampling:
	for {
		select {
		case <-done:
			break sampling
		case <-tick.C:
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := loadgen.Scrape(sctx, scraper, base, "go_goroutines", "process_resident_memory_bytes")
		cancel()
		if err != nil {
			fmt.Fprintln(log, "soak: sample:", err)
			continue
		}
		s := Sample{AtS: time.Since(start).Seconds(), Goroutines: v["go_goroutines"], RSS: v["process_resident_memory_bytes"]}
		fmt.Fprintf(log, "soak: t=%4.0fs goroutines %4.0f RSS %6.1f MiB\n", s.AtS, s.Goroutines, s.RSS/(1<<20))
		rep.Samples = append(rep.Samples, s)
	}

	var judged []Sample
	for _, s := range rep.Samples {
		if s.AtS >= o.warmup.Seconds() {
			judged = append(judged, s)
		}
	}
	if len(judged) < 3 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("only %d samples after the warm-up; lengthen -duration or shorten -sample", len(judged)))
	} else {
		third := len(judged) / 3
		med := func(ss []Sample, f func(Sample) float64) float64 {
			v := make([]float64, len(ss))
			for i, s := range ss {
				v[i] = f(s)
			}
			return loadgen.Median(v)
		}
		g := func(s Sample) float64 { return s.Goroutines }
		m := func(s Sample) float64 { return s.RSS }
		first, last := judged[:third], judged[len(judged)-third:]
		rep.FirstGoroutine, rep.LastGoroutine = med(first, g), med(last, g)
		rep.FirstRSS, rep.LastRSS = med(first, m), med(last, m)
		if limit := rep.FirstGoroutine*(1+o.maxGrowth) + o.goroutineSlack; rep.LastGoroutine > limit {
			rep.Problems = append(rep.Problems, fmt.Sprintf("goroutines grew from %.0f to %.0f (limit %.0f)", rep.FirstGoroutine, rep.LastGoroutine, limit))
		}
		if limit := rep.FirstRSS * (1 + o.maxGrowth); rep.LastRSS > limit {
			rep.Problems = append(rep.Problems, fmt.Sprintf("RSS grew from %.1f to %.1f MiB (limit %.1f)", rep.FirstRSS/(1<<20), rep.LastRSS/(1<<20), limit/(1<<20)))
		}
	}
	if len(rep.Errors) > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("transport errors: %v", rep.Errors))
	}
	rep.Pass = len(rep.Problems) == 0
	return rep, nil
}
