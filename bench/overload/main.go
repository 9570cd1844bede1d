// Command overload drives the classification service at several times its
// measured capacity and checks that it degrades the way issue 5 demands:
//
//   - it does not crash;
//   - its resident memory stays under -rss-cap;
//   - excess requests are refused quickly with 503 and a Retry-After
//     header, not left to time out;
//   - accepted requests keep their p99 latency within -p99-factor times the
//     p99 measured at capacity without overload;
//   - after the load stops, go_goroutines and process_resident_memory_bytes
//     from /metrics return to within -settle-tolerance of their baseline.
//
// It starts "fashion serve" on 127.0.0.1 itself (or uses -url, a loopback
// URL), measures capacity with a closed-loop run of POST /v1/classify (a
// 28×28 PNG) at -concurrency, then offers -factor times that rate open-loop
// for -duration, with at most -max-inflight requests outstanding. Every
// phase is bounded in time; all traffic stays on loopback. It prints a
// report, writes it as JSON with -json, and exits with status 1 if any
// check fails.
//
// Usage, from the repository root, on an otherwise idle machine:
//
//	go run ./bench/overload -bin /tmp/fashion-bench -json /tmp/overload.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fashion-classifier/fashion/bench/load/loadgen"
)

// options are the command-line settings.
type options struct {
	bin, url, serverArgs     string
	pid                      int
	concurrency              int
	capacityTime, warmup     time.Duration
	duration, timeout        time.Duration
	factor, p99Factor        float64
	maxInFlight              int
	rssCap                   int64
	rejectP99                time.Duration
	settle                   time.Duration
	settleTolerance          float64
	jsonPath                 string
	minRejectedShareOfExcess float64
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "fashion binary to start (default: build ./cmd/fashion into a temporary directory)")
	flag.StringVar(&o.url, "url", "", "overload this already running loopback server instead of starting one")
	flag.IntVar(&o.pid, "pid", 0, "with -url: that server's process id, for VmRSS/VmHWM sampling")
	flag.StringVar(&o.serverArgs, "server-args", "-queue 64", "extra flags for fashion serve, space-separated")
	flag.IntVar(&o.concurrency, "concurrency", 16, "closed-loop concurrency of the capacity measurement")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before the capacity measurement")
	flag.DurationVar(&o.capacityTime, "capacity-time", 5*time.Second, "length of the capacity measurement")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "length of the overload")
	flag.Float64Var(&o.factor, "factor", 5, "offered rate as a multiple of measured capacity")
	flag.IntVar(&o.maxInFlight, "max-inflight", 1024, "most requests outstanding at once during the overload")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "client timeout per request; a request that hits it counts as a failure")
	flag.Float64Var(&o.p99Factor, "p99-factor", 5, "accepted requests' p99 must stay within this multiple of the p99 at capacity")
	flag.DurationVar(&o.rejectP99, "reject-p99", 0, "503 answers must have p99 below this (default: the accepted-latency bound)")
	flag.Int64Var(&o.rssCap, "rss-cap", 150<<20, "resident memory cap in bytes during the overload")
	flag.DurationVar(&o.settle, "settle", 300*time.Second, "longest wait for goroutines and memory to return to baseline after the load (an idle Go program collects garbage every 2 minutes, and the runtime returns freed memory to the OS over about two such cycles)")
	flag.Float64Var(&o.settleTolerance, "settle-tolerance", 0.10, "allowed relative excess over baseline after settling")
	flag.Float64Var(&o.minRejectedShareOfExcess, "min-shed", 0.5, "at least this share of the offered excess must be answered 503 (not dropped or timed out)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the report as JSON to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o, os.Stderr)
	if rep == nil {
		os.Exit(loadgen.Finish("overload", nil, "", false, o.jsonPath, err))
	}
	os.Exit(loadgen.Finish("overload", rep, rep.text(), rep.Pass, o.jsonPath, err))
}

// Check is one pass/fail criterion.
type Check struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// Report is what the overload run measured and concluded.
type Report struct {
	Date             string         `json:"date"`
	Machine          string         `json:"machine"`
	ServerArgs       string         `json:"server_args"`
	Endpoint         string         `json:"endpoint"`
	CapacityRPS      float64        `json:"capacity_rps"`
	CapacityP99ms    float64        `json:"capacity_p99_ms"`
	SingleP99ms      float64        `json:"c1_p99_ms"`
	OfferedRPS       float64        `json:"offered_rps"`
	DurationS        float64        `json:"duration_s"`
	Sent             int            `json:"sent"`
	Dropped          int            `json:"dropped_inflight_cap"`
	Status           map[int]int    `json:"status"`
	Errors           map[string]int `json:"errors"`
	AcceptedRPS      float64        `json:"accepted_rps"`
	AcceptedP50ms    float64        `json:"accepted_p50_ms"`
	AcceptedP99ms    float64        `json:"accepted_p99_ms"`
	RejectedP50ms    float64        `json:"rejected_p50_ms"`
	RejectedP99ms    float64        `json:"rejected_p99_ms"`
	NoRetryAfter     int            `json:"rejected_without_retry_after"`
	PeakRSS          int64          `json:"peak_rss_bytes"`
	BaseGoroutines   float64        `json:"baseline_goroutines"`
	BaseRSS          float64        `json:"baseline_rss_bytes"`
	PeakGoroutines   float64        `json:"peak_goroutines"`
	AfterGoroutines  float64        `json:"after_goroutines"`
	AfterRSS         float64        `json:"after_rss_bytes"`
	SettleSeconds    float64        `json:"settle_s"`
	Checks           []Check        `json:"checks"`
	Pass             bool           `json:"pass"`
	RSSCap           int64          `json:"rss_cap_bytes"`
	AcceptedP99Bound float64        `json:"accepted_p99_bound_ms"`
}

func (r *Report) check(name string, pass bool, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, Pass: pass, Detail: fmt.Sprintf(format, args...)})
}

// text renders the report for people.
func (r *Report) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "overload: %s; %s\n", r.Date, r.Machine)
	fmt.Fprintf(&b, "server flags: %s; endpoint %s\n", r.ServerArgs, r.Endpoint)
	fmt.Fprintf(&b, "capacity: %.0f req/s at c16 (p99 %.1f ms; c1 p99 %.1f ms)\n", r.CapacityRPS, r.CapacityP99ms, r.SingleP99ms)
	fmt.Fprintf(&b, "offered %.0f req/s for %.0f s: sent %d, not sent (in-flight cap) %d, statuses %v, errors %v\n",
		r.OfferedRPS, r.DurationS, r.Sent, r.Dropped, r.Status, r.Errors)
	fmt.Fprintf(&b, "accepted %.0f req/s, p50 %.1f ms, p99 %.1f ms; 503 p50 %.1f ms, p99 %.1f ms\n",
		r.AcceptedRPS, r.AcceptedP50ms, r.AcceptedP99ms, r.RejectedP50ms, r.RejectedP99ms)
	fmt.Fprintf(&b, "RSS peak %.1f MiB (cap %.1f); goroutines %.0f → peak %.0f → %.0f; RSS %.1f → %.1f MiB after %.0f s\n",
		float64(r.PeakRSS)/(1<<20), float64(r.RSSCap)/(1<<20), r.BaseGoroutines, r.PeakGoroutines, r.AfterGoroutines,
		r.BaseRSS/(1<<20), r.AfterRSS/(1<<20), r.SettleSeconds)
	for _, c := range r.Checks {
		v := "PASS"
		if !c.Pass {
			v = "FAIL"
		}
		fmt.Fprintf(&b, "  %s  %-26s %s\n", v, c.Name, c.Detail)
	}
	if r.Pass {
		b.WriteString("overload: PASS\n")
	} else {
		b.WriteString("overload: FAIL\n")
	}
	return b.String()
}

// Series read from /metrics.
const (
	goroutines = "go_goroutines"
	rss        = "process_resident_memory_bytes"
)

func run(ctx context.Context, o options, log io.Writer) (*Report, error) {
	if o.factor <= 1 || o.duration <= 0 || o.maxInFlight < 1 || o.concurrency < 1 {
		return nil, errors.New("-factor must exceed 1; -duration, -max-inflight and -concurrency must be positive")
	}
	rep := &Report{
		Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Machine: loadgen.Machine(),
		ServerArgs: o.serverArgs, Endpoint: "POST /v1/classify (28×28 PNG)", RSSCap: o.rssCap,
	}
	base, pid := o.url, o.pid
	var srv *loadgen.ServerProcess
	client := loadgen.NewClient(o.maxInFlight)
	if base == "" {
		if o.bin == "" {
			dir, err := os.MkdirTemp("", "fashion-overload")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
			if o.bin, err = loadgen.BuildFashion(ctx, dir); err != nil {
				return nil, err
			}
		}
		var err error
		srv, err = loadgen.StartServer(o.bin, append([]string{"-log-level", "error"}, strings.Fields(o.serverArgs)...)...)
		if err != nil {
			return nil, err
		}
		defer srv.Stop(15 * time.Second)
		base, pid = srv.URL, srv.PID()
	} else if err := loadgen.CheckLoopback(base); err != nil {
		return nil, err
	}
	tgt := loadgen.Target{Name: "upload", Method: "POST", URL: base + "/v1/classify", ContentType: "image/png", Body: loadgen.ItemPNG()}
	if srv != nil {
		if _, err := srv.WaitAnswer(ctx, client, tgt, 20*time.Second); err != nil {
			return nil, err
		}
	}

	fmt.Fprintln(log, "measuring capacity")
	single, err := loadgen.RunClosed(ctx, client, tgt, loadgen.Closed{Concurrency: 1, Warmup: o.warmup, Duration: o.capacityTime / 2})
	if err != nil {
		return nil, err
	}
	rep.SingleP99ms = loadgen.Ms(loadgen.Summarize(single.OK).P99)
	capRes, err := loadgen.RunClosed(ctx, client, tgt, loadgen.Closed{Concurrency: o.concurrency, Warmup: o.warmup, Duration: o.capacityTime})
	if err != nil {
		return nil, err
	}
	if capRes.Failed() > 0 || len(capRes.OK) == 0 {
		return nil, fmt.Errorf("capacity run: %d of %d requests failed (statuses %v, errors %v); the server is not healthy", capRes.Failed(), capRes.Sent, capRes.Status, capRes.Errors)
	}
	rep.CapacityRPS = float64(len(capRes.OK)) / capRes.Elapsed.Seconds()
	rep.CapacityP99ms = loadgen.Ms(loadgen.Summarize(capRes.OK).P99)
	rep.AcceptedP99Bound = o.p99Factor * rep.CapacityP99ms
	rejectBound := loadgen.Ms(o.rejectP99)
	if o.rejectP99 <= 0 {
		rejectBound = rep.AcceptedP99Bound
	}

	// Baseline: the server after ordinary load, with the clients gone.
	client.CloseIdleConnections()
	time.Sleep(2 * time.Second)
	baseline, err := loadgen.Scrape(ctx, client, base, goroutines, rss)
	if err != nil {
		return nil, err
	}
	client.CloseIdleConnections()
	rep.BaseGoroutines, rep.BaseRSS = baseline[goroutines], baseline[rss]

	rep.OfferedRPS = o.factor * rep.CapacityRPS
	rep.DurationS = o.duration.Seconds()
	fmt.Fprintf(log, "capacity %.0f req/s (p99 %.1f ms); offering %.0f req/s for %v\n", rep.CapacityRPS, rep.CapacityP99ms, rep.OfferedRPS, o.duration)
	samp := sampleDuring(ctx, pid, base)
	res, err := loadgen.RunOpen(ctx, client, tgt, loadgen.Open{Rate: rep.OfferedRPS, Duration: o.duration, MaxInFlight: o.maxInFlight, Timeout: o.timeout})
	peak := samp.stop()
	if err != nil {
		return nil, err
	}
	rep.PeakRSS, rep.PeakGoroutines = peak.rss, peak.goroutines
	if srv != nil {
		if m, err := srv.Memory(); err == nil {
			rep.PeakRSS = max(rep.PeakRSS, m.HWM)
		}
	}
	rep.Sent, rep.Dropped, rep.Status, rep.Errors = res.Sent, res.Dropped, res.Status, res.Errors
	acc, rej := loadgen.Summarize(res.OK), loadgen.Summarize(res.Rejected)
	rep.AcceptedRPS = float64(len(res.OK)) / res.Elapsed.Seconds()
	rep.AcceptedP50ms, rep.AcceptedP99ms = loadgen.Ms(acc.P50), loadgen.Ms(acc.P99)
	rep.RejectedP50ms, rep.RejectedP99ms = loadgen.Ms(rej.P50), loadgen.Ms(rej.P99)
	rep.NoRetryAfter = res.RejectedNoRetryAfter

	// Let the server recover with no clients connected.
	client.CloseIdleConnections()
	start := time.Now()
	tol := 1 + o.settleTolerance
	goroutineLimit := math.Ceil(rep.BaseGoroutines * tol)
	for {
		time.Sleep(time.Second)
		after, err := loadgen.Scrape(ctx, client, base, goroutines, rss)
		client.CloseIdleConnections()
		if err == nil {
			rep.AfterGoroutines, rep.AfterRSS = after[goroutines], after[rss]
			if n := int(time.Since(start).Seconds()); n%10 == 0 {
				fmt.Fprintf(log, "settling: %ds: goroutines %.0f (baseline %.0f), RSS %.1f MiB (baseline %.1f)\n",
					n, rep.AfterGoroutines-1, rep.BaseGoroutines, rep.AfterRSS/(1<<20), rep.BaseRSS/(1<<20))
			}
			// The scrape's own connection handler is one goroutine.
			if rep.AfterGoroutines-1 <= goroutineLimit && rep.AfterRSS <= rep.BaseRSS*tol {
				break
			}
		}
		if time.Since(start) > o.settle || ctx.Err() != nil {
			break
		}
	}
	rep.SettleSeconds = time.Since(start).Seconds()

	crashed := false
	if srv != nil {
		if done, err := srv.Exited(); done {
			crashed = true
			rep.check("no crash", false, "server exited: %v; log tail:\n%s", err, srv.Log())
		}
	}
	if !crashed {
		st, err := loadgen.Do(ctx, client, loadgen.Target{Name: "healthz", URL: base + "/healthz"})
		rep.check("no crash", err == nil && st == http.StatusOK, "GET /healthz after the load: status %d, error %v", st, err)
	}
	rep.check("RSS under cap", rep.PeakRSS > 0 && rep.PeakRSS <= o.rssCap, "peak %.1f MiB, cap %.1f MiB", float64(rep.PeakRSS)/(1<<20), float64(o.rssCap)/(1<<20))
	others := 0
	for code, n := range res.Status {
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			others += n
		}
	}
	excess := math.Max(0, float64(res.Sent+res.Dropped)-rep.CapacityRPS*o.duration.Seconds())
	shed := len(res.Rejected)
	rep.check("excess refused with 503", shed > 0 && float64(shed) >= o.minRejectedShareOfExcess*excess && others == 0,
		"%d × 503 for an offered excess of about %.0f requests over capacity; %d answers with another non-2xx status; %d arrivals not sent because %d requests were outstanding",
		shed, excess, others, res.Dropped, o.maxInFlight)
	rep.check("503s carry Retry-After", shed > 0 && res.RejectedNoRetryAfter == 0, "%d of %d without Retry-After", res.RejectedNoRetryAfter, shed)
	rep.check("503s are fast", shed > 0 && rep.RejectedP99ms <= rejectBound, "503 p99 %.1f ms, bound %.1f ms", rep.RejectedP99ms, rejectBound)
	rep.check("no timeouts or resets", res.ErrorCount() == 0, "transport errors: %v (client timeout %v)", res.Errors, o.timeout)
	rep.check("accepted p99 bounded", len(res.OK) > 0 && rep.AcceptedP99ms <= rep.AcceptedP99Bound,
		"accepted p99 %.1f ms, bound %.0f × %.1f ms (p99 at capacity) = %.1f ms", rep.AcceptedP99ms, o.p99Factor, rep.CapacityP99ms, rep.AcceptedP99Bound)
	rep.check("goroutines back to baseline", rep.AfterGoroutines-1 <= goroutineLimit,
		"%.0f after %.0f s (excluding the scrape's own), baseline %.0f, limit %.0f", rep.AfterGoroutines-1, rep.SettleSeconds, rep.BaseGoroutines, goroutineLimit)
	rep.check("RSS back to baseline", rep.AfterRSS <= rep.BaseRSS*tol,
		"%.1f MiB after %.0f s, baseline %.1f MiB, limit %.1f MiB", rep.AfterRSS/(1<<20), rep.SettleSeconds, rep.BaseRSS/(1<<20), rep.BaseRSS*tol/(1<<20))
	rep.Pass = true
	for _, c := range rep.Checks {
		rep.Pass = rep.Pass && c.Pass
	}
	return rep, nil
}

// peaks are the highest figures seen while sampling.
type peaks struct {
	rss        int64
	goroutines float64
}

// sampler polls the server's memory (VmRSS from /proc when pid is known)
// and its goroutine count (from /metrics) until stopped.
type sampler struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	p      peaks
}

func sampleDuring(ctx context.Context, pid int, base string) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{cancel: cancel}
	client := loadgen.NewClient(1)
	s.wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var r int64
			if pid > 0 {
				if m, err := loadgen.ReadMemory(pid); err == nil {
					r = m.RSS
				}
			}
			sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
			v, err := loadgen.Scrape(sctx, client, base, goroutines, rss)
			scancel()
			s.mu.Lock()
			if err == nil {
				s.p.goroutines = max(s.p.goroutines, v[goroutines])
				r = max(r, int64(v[rss]))
			}
			s.p.rss = max(s.p.rss, r)
			s.mu.Unlock()
		}
	})
	return s
}

func (s *sampler) stop() peaks {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}
