// Package loadgen is the load generator shared by the benchmark and
// reliability programs under bench/: a keep-alive HTTP client that can only
// reach loopback addresses, closed-loop (fixed concurrency) and open-loop
// (fixed arrival rate) drivers that are bounded in time and request count,
// latency statistics, a scraper for the server's Prometheus metrics, and
// helpers that start "fashion serve" and a local image server.
//
// Every address this package sends traffic to is checked twice: the URL's
// host must be a loopback IP literal (or "localhost"), and the dialer's
// Control hook refuses any address outside 127.0.0.0/8 and ::1 before the
// connect system call, so neither a typo nor a redirect can send benchmark
// traffic to another machine.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// CheckLoopback returns an error unless rawURL is an http URL whose host is
// a loopback IP literal or "localhost".
func CheckLoopback(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("target %q is not a URL: %w", rawURL, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("target %q: only http:// loopback targets are allowed", rawURL)
	}
	return checkLoopbackHost(u.Hostname())
}

// ErrNotLoopback is wrapped by every refusal of a non-loopback target.
var ErrNotLoopback = errors.New("not a loopback address")

func checkLoopbackHost(host string) error {
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("host %q is not an IP literal or localhost (%w); the load generator only targets loopback addresses", host, ErrNotLoopback)
	}
	if !ip.Unmap().IsLoopback() {
		return fmt.Errorf("host %s: %w; the load generator refuses to send traffic anywhere else", ip, ErrNotLoopback)
	}
	return nil
}

// loopbackOnly is a net.Dialer Control hook that refuses every address
// outside 127.0.0.0/8 and ::1, after name resolution and before connecting.
func loopbackOnly(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refusing to dial %q over %s: not a numeric address", address, network)
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("refusing to dial %s: %w", ap, ErrNotLoopback)
	}
	return nil
}

// NewClient returns a keep-alive HTTP client that keeps up to conns idle
// connections per host and can only dial loopback addresses. It does not
// follow redirects, so every answer is the server's own.
func NewClient(conns int) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second, Control: loopbackOnly}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         d.DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Target is one kind of request a driver sends over and over.
type Target struct {
	// Name labels the target in reports.
	Name string
	// Method is the HTTP method; empty means GET.
	Method string
	// URL is the full loopback URL.
	URL string
	// ContentType and Body, when Body is not nil, are sent with each request.
	ContentType string
	Body        []byte
}

// Check reports whether t may be sent: its URL must be on loopback.
func (t Target) Check() error {
	if err := CheckLoopback(t.URL); err != nil {
		return fmt.Errorf("target %s: %w", t.Name, err)
	}
	return nil
}

// newRequest builds one request for t.
func (t Target) newRequest(ctx context.Context) (*http.Request, error) {
	method := t.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if t.Body != nil {
		body = bytes.NewReader(t.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.URL, body)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.Name, err)
	}
	if t.ContentType != "" {
		req.Header.Set("Content-Type", t.ContentType)
	}
	return req, nil
}

// outcome is one finished request.
type outcome struct {
	status     int // 0 if no answer arrived
	errKind    string
	latency    time.Duration
	retryAfter bool
}

// Do sends one request for t with client and reads the whole answer. It
// returns the status (0 with an error when no answer arrived).
func Do(ctx context.Context, client *http.Client, t Target) (int, error) {
	o := send(ctx, client, t, 0)
	if o.status == 0 {
		return 0, fmt.Errorf("%s %s: %s", t.Method, t.URL, o.errKind)
	}
	return o.status, nil
}

// send performs one request with an optional timeout and classifies it.
func send(ctx context.Context, client *http.Client, t Target, timeout time.Duration) outcome {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := t.newRequest(ctx)
	if err != nil {
		return outcome{errKind: "bad_request: " + err.Error()}
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return outcome{errKind: errKind(err), latency: time.Since(start)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	lat := time.Since(start)
	if err != nil {
		return outcome{errKind: errKind(err), latency: lat}
	}
	return outcome{status: resp.StatusCode, latency: lat, retryAfter: resp.Header.Get("Retry-After") != ""}
}

// errKind names a transport error in a few words for the error table.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	}
	return "other: " + err.Error()
}

// Result collects what a driver saw.
type Result struct {
	// Elapsed is the length of the measured phase.
	Elapsed time.Duration
	// Sent counts requests started in the measured phase.
	Sent int
	// Status counts answers by HTTP status.
	Status map[int]int
	// Errors counts requests that got no answer, by kind.
	Errors map[string]int
	// OK holds the latencies of 2xx answers; Rejected those of 503s.
	OK, Rejected []time.Duration
	// RejectedNoRetryAfter counts 503 answers without a Retry-After header.
	RejectedNoRetryAfter int
	// Dropped counts open-loop arrivals that found every in-flight slot
	// busy and were not sent (the server was holding connections).
	Dropped int
	// Other holds latencies of every other answer (4xx, other 5xx).
	Other []time.Duration
}

func newResult() *Result {
	return &Result{Status: map[int]int{}, Errors: map[string]int{}}
}

// add records one outcome.
func (r *Result) add(o outcome) {
	r.Sent++
	switch {
	case o.status == 0:
		r.Errors[o.errKind]++
		return
	case o.status >= 200 && o.status < 300:
		r.OK = append(r.OK, o.latency)
	case o.status == http.StatusServiceUnavailable:
		r.Rejected = append(r.Rejected, o.latency)
		if !o.retryAfter {
			r.RejectedNoRetryAfter++
		}
	default:
		r.Other = append(r.Other, o.latency)
	}
	r.Status[o.status]++
}

// merge adds o's counts and latencies to r.
func (r *Result) merge(o *Result) {
	r.Sent += o.Sent
	for k, v := range o.Status {
		r.Status[k] += v
	}
	for k, v := range o.Errors {
		r.Errors[k] += v
	}
	r.OK = append(r.OK, o.OK...)
	r.Rejected = append(r.Rejected, o.Rejected...)
	r.Other = append(r.Other, o.Other...)
	r.RejectedNoRetryAfter += o.RejectedNoRetryAfter
	r.Dropped += o.Dropped
}

// Failed counts requests that got no answer or an answer other than 2xx.
func (r *Result) Failed() int { return r.Sent - len(r.OK) }

// ErrorCount is the number of requests without any answer.
func (r *Result) ErrorCount() int {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// Closed configures a closed-loop run: Concurrency workers each send a
// request as soon as their previous one is answered.
type Closed struct {
	Concurrency int
	// Warmup is run first and not recorded.
	Warmup time.Duration
	// Duration bounds the measured phase.
	Duration time.Duration
	// MaxRequests bounds the measured phase's request count (0: 1,000,000).
	MaxRequests int
	// Timeout bounds each request (0: 10s).
	Timeout time.Duration
}

// RunClosed drives t with cfg and returns what the measured phase saw.
func RunClosed(ctx context.Context, client *http.Client, t Target, cfg Closed) (*Result, error) {
	if err := t.Check(); err != nil {
		return nil, err
	}
	if cfg.Concurrency < 1 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("closed-loop run of %s: concurrency %d and duration %v must be positive", t.Name, cfg.Concurrency, cfg.Duration)
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = 1_000_000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Warmup > 0 {
		closedPhase(ctx, client, t, cfg.Concurrency, cfg.Warmup, cfg.MaxRequests, cfg.Timeout)
	}
	return closedPhase(ctx, client, t, cfg.Concurrency, cfg.Duration, cfg.MaxRequests, cfg.Timeout), nil
}

func closedPhase(ctx context.Context, client *http.Client, t Target, conc int, d time.Duration, maxReq int, timeout time.Duration) *Result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		budget atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		total  = newResult()
	)
	budget.Store(int64(maxReq))
	start := time.Now()
	for range conc {
		wg.Go(func() {
			r := newResult()
			for ctx.Err() == nil && budget.Add(-1) >= 0 {
				o := send(ctx, client, t, timeout)
				if o.errKind == "canceled" || (o.status == 0 && ctx.Err() != nil) {
					break // the phase ended mid-request; not the server's fault
				}
				r.add(o)
			}
			mu.Lock()
			total.merge(r)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.Elapsed = time.Since(start)
	return total
}

// Open configures an open-loop run: requests arrive at Rate per second
// whatever the server does, each on one of MaxInFlight workers.
type Open struct {
	Rate        float64
	Duration    time.Duration
	MaxInFlight int
	// Timeout bounds each request (0: 5s).
	Timeout time.Duration
}

// RunOpen drives t with cfg. Arrivals that find every worker busy are
// counted as Dropped, not queued, so the generator's memory stays bounded.
func RunOpen(ctx context.Context, client *http.Client, t Target, cfg Open) (*Result, error) {
	if err := t.Check(); err != nil {
		return nil, err
	}
	if cfg.Rate <= 0 || cfg.Duration <= 0 || cfg.MaxInFlight < 1 {
		return nil, fmt.Errorf("open-loop run of %s: rate %v, duration %v and in-flight cap %d must be positive", t.Name, cfg.Rate, cfg.Duration, cfg.MaxInFlight)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	work := make(chan struct{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total = newResult()
	)
	// Workers outlive the pacer by at most one request timeout; they use a
	// context that is not cut at the end of the arrival window, so requests
	// already sent are answered and recorded.
	for range cfg.MaxInFlight {
		wg.Go(func() {
			r := newResult()
			for range work {
				r.add(send(ctx, client, t, cfg.Timeout))
			}
			mu.Lock()
			total.merge(r)
			mu.Unlock()
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	dropped := 0
	sent := 0
pace:
	for ctx.Err() == nil {
		now := <-tick.C
		el := now.Sub(start)
		if el >= cfg.Duration {
			break
		}
		due := int(el.Seconds()*cfg.Rate) - sent - dropped
		for range due {
			select {
			case work <- struct{}{}:
				sent++
			case <-ctx.Done():
				break pace
			default:
				dropped++
			}
		}
	}
	tick.Stop()
	close(work)
	wg.Wait()
	total.Elapsed = time.Since(start)
	total.Dropped = dropped
	return total, nil
}

// Stats summarises a set of latencies.
type Stats struct {
	Count         int
	P50, P90, P99 time.Duration
	Max           time.Duration
}

// Summarize returns the nearest-rank percentiles of lat (which it sorts).
func Summarize(lat []time.Duration) Stats {
	if len(lat) == 0 {
		return Stats{}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		i := int(p*float64(len(lat))+0.999999) - 1
		return lat[min(max(i, 0), len(lat)-1)]
	}
	return Stats{Count: len(lat), P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Max: lat[len(lat)-1]}
}

// Ms converts d to fractional milliseconds, for reports.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Median returns the median of v (the mean of the middle two for even
// lengths); 0 for an empty slice. v is not modified.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WriteJSON writes v, indented, to path: the machine-readable report every
// bench program offers with -json.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Finish ends a judging bench program (overload, soak): it prints the
// report's text, writes the report as JSON to jsonPath when set, reports
// err, and returns the exit code: 1 on an error or a failed check.
// report is nil when the run produced none.
func Finish(name string, report any, text string, pass bool, jsonPath string, err error) int {
	code := 0
	if report != nil {
		fmt.Print(text)
		if jsonPath != "" {
			if werr := WriteJSON(jsonPath, report); werr != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", name, werr)
				code = 1
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	if !pass {
		return 1
	}
	return code
}
