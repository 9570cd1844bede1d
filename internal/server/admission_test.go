package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestAdmissionRefusesFullServerFast fills a server's only inference slot
// with a request held inside the model, then checks that every inference
// endpoint answers 503 with Retry-After at once without decoding, that
// probes and metrics still answer, and that the slot is reusable once the
// held request finishes.
func TestAdmissionRefusesFullServerFast(t *testing.T) {
	fake := newFake()
	fake.started = make(chan int, 1)
	fake.gate = make(chan struct{}, 2)
	ts := startServer(t, Config{MaxBatch: 1, Queue: 8, MaxInFlight: 1, MaxDelay: -1}, fake)
	img, _ := testImage(t, 100)

	held := make(chan int, 1)
	go func() { held <- do(t, "POST", ts.url+"/v1/classify", "image/png", img).code }()
	<-fake.started
	if n := ts.inference.inFlight.Load(); n != 1 {
		t.Fatalf("in flight while one request is in the model: %d, want 1", n)
	}

	mp, mpType := multipartBody(t, img)
	tests := []struct {
		name, method, target, contentType string
		body                              []byte
	}{
		{"raw upload", "POST", "/v1/classify", "image/png", img},
		{"multipart batch", "POST", "/v1/classify", mpType, mp},
		{"JSON", "POST", "/v1/classify", "application/json", []byte(`{"images":[{"url":"http://127.0.0.1:1/x.png"}]}`)},
		{"v2 infer", "POST", "/v2/models/fashion-mnist/infer", "application/json", []byte(`{"inputs":[]}`)},
		{"v2 infer, versioned", "POST", "/v2/models/fashion-mnist/versions/1/infer", "application/json", []byte(`{"inputs":[]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, bytes.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			rec := httptest.NewRecorder()
			start := time.Now()
			ts.ServeHTTP(rec, req)
			d := time.Since(start)
			if rec.Code != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503; body %s", rec.Code, rec.Body)
			}
			if rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if !strings.Contains(rec.Body.String(), "retry later") {
				t.Errorf("error body %q does not tell the client to retry", rec.Body)
			}
			// A refusal reads a small body and decodes nothing:
			// microseconds, with a wide margin for -race and a busy machine.
			if d > 100*time.Millisecond {
				t.Errorf("refusal took %v, want well under 100ms", d)
			}
		})
	}

	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v2/health/ready"} {
		if r := do(t, "GET", ts.url+path, "", nil); r.code != http.StatusOK {
			t.Errorf("GET %s on a full server: status %d, want 200 (probes are outside admission control)", path, r.code)
		}
	}
	m := string(do(t, "GET", ts.url+"/metrics", "", nil).body)
	for _, line := range []string{
		fmt.Sprintf(`fashion_admission_rejected_total{stage="in_flight"} %d`, len(tests)),
		"fashion_inflight_requests 1",
		"fashion_queue_rejected_total 0",
	} {
		if !containsLine(m, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	// Two passes: the held request's, and the one after the slot is free.
	fake.gate <- struct{}{}
	fake.gate <- struct{}{}
	if c := <-held; c != http.StatusOK {
		t.Fatalf("held request: status %d, want 200", c)
	}
	waitFor(t, "the slot to be released", func() bool { return ts.inference.inFlight.Load() == 0 })
	if r := do(t, "POST", ts.url+"/v1/classify", "image/png", img); r.code != http.StatusOK {
		t.Errorf("request after the slot freed: status %d, want 200; body %s", r.code, r.body)
	}
	if held := ts.budget.held.Load(); held != 0 {
		t.Errorf("%d bytes of the body budget still held after every request ended", held)
	}
}

// TestMaxInFlightDefault checks how the admission bound follows the batcher
// settings when it is not set.
func TestMaxInFlightDefault(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want int
	}{
		{"all defaults: one batch of 32", Config{}, 32},
		{"two workers", Config{MaxBatch: 8, Workers: 2}, 16},
		{"capped by a shallow queue", Config{MaxBatch: 32, Queue: 10}, 10},
		{"set explicitly", Config{MaxBatch: 32, MaxInFlight: 100}, 100},
	}
	for _, tt := range tests {
		if got := tt.cfg.withDefaults().MaxInFlight; got != tt.want {
			t.Errorf("%s: MaxInFlight %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestDefaultConfigIsComplete checks that withDefaults changes nothing in
// DefaultConfig but the derived fields, so every default is stated once.
func TestDefaultConfigIsComplete(t *testing.T) {
	d := DefaultConfig()
	w := d.withDefaults()
	if w.MaxDelay != d.MaxDelay || w.Fetch.MaxRedirects != d.Fetch.MaxRedirects || w.RequestTimeout != d.RequestTimeout {
		t.Errorf("withDefaults changed stated defaults: %+v → %+v", d, w)
	}
	if c := (Config{MaxDelay: 0}).withDefaults(); c.MaxDelay != 0 {
		t.Errorf("MaxDelay 0 became %v, want 0 (never wait)", c.MaxDelay)
	}
}

// TestSizeForMemory checks the budgets derived from a memory limit fit it.
func TestSizeForMemory(t *testing.T) {
	for _, limit := range []int64{230 << 20, 1 << 30, 8 << 30} {
		c := Config{MemoryLimit: limit}.withDefaults()
		planned := baseMemory + int64(c.MaxDecodes)*decodeMemory + c.BodyBudget + int64(c.MaxConns)*connMemory
		if planned > limit {
			t.Errorf("limit %d MiB: planned %d MiB (%d decodes, body budget %d MiB, %d conns)",
				limit>>20, planned>>20, c.MaxDecodes, c.BodyBudget>>20, c.MaxConns)
		}
		if c.BodyBudget < 2*c.MaxBody || c.MaxDecodes < 1 || c.MaxConns < 64 {
			t.Errorf("limit %d MiB: budgets too small to serve: %+v", limit>>20, c)
		}
	}
}

// TestLeaseRead checks the byte budget's read: bytes charged as they
// arrive, the limit+1 convention, a lying declared length, refusal when the
// budget is spent, and everything returned on release.
func TestLeaseRead(t *testing.T) {
	b := newByteBudget(1 << 20)
	l, err := b.newLease()
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("x"), 100<<10)
	got, err := l.readHint(bytes.NewReader(data), 1000, 200<<10) // declared 1000, sends 100 KiB
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want all %d", len(got), err, len(data))
	}
	if held := b.held.Load(); held < int64(len(data)) || held > 2*int64(len(data))+leaseOverhead {
		t.Errorf("held %d bytes for a %d-byte body", held, len(data))
	}
	got, err = l.read(bytes.NewReader(data), 10<<10)
	if err != nil || len(got) != 10<<10+1 {
		t.Errorf("read over the limit gave %d bytes, %v; want limit+1", len(got), err)
	}
	if _, err := l.read(bytes.NewReader(make([]byte, 2<<20)), 4<<20); err != errBodyBudget {
		t.Errorf("read past the budget: %v, want errBodyBudget", err)
	}
	l.release()
	l.release()
	if held := b.held.Load(); held != 0 {
		t.Errorf("held %d bytes after release", held)
	}
	if !b.sem.TryAcquire(1 << 20) {
		t.Error("the whole budget is not free after release")
	}
}

// Trickle opens a connection to addr and sends a POST to path declaring a
// body of declared bytes that arrive one byte per interval until the server
// answers or ctx ends; it returns the status (0 if none). It is exported for
// the hostile-input suite in package server_test (test files only).
func Trickle(ctx context.Context, addr, path string, declared int, interval time.Duration) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		time.Sleep(interval)
		return 0
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n", path, declared)
	status := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case code := <-status:
			return code
		case <-ctx.Done():
			return 0
		case <-tick.C:
			if _, err := c.Write([]byte{'x'}); err != nil {
				return <-status
			}
		}
	}
}

// TestSlowBodiesHoldNoInferenceSlot sends more trickling bodies than there
// are inference slots and checks that honest uploads still get 200, and
// that the trickling ones are cut off with 408 after BodyTimeout.
func TestSlowBodiesHoldNoInferenceSlot(t *testing.T) {
	ts := startServer(t, Config{MaxInFlight: 2, BodyTimeout: 500 * time.Millisecond}, newFake())
	img, _ := testImage(t, 100)
	addr := strings.TrimPrefix(ts.url, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	codes := make(chan int, 8)
	for range 8 {
		go func() { codes <- Trickle(ctx, addr, "/v1/classify", 1000, 50*time.Millisecond) }()
	}
	waitFor(t, "the trickling bodies to be in progress", func() bool { return ts.budget.held.Load() >= 8*leaseOverhead })
	for i := range 5 {
		if r := do(t, "POST", ts.url+"/v1/classify", "image/png", img); r.code != http.StatusOK {
			t.Errorf("upload %d beside 8 trickling bodies: status %d, want 200; %s", i, r.code, r.body)
		}
	}
	for range 8 {
		if c := <-codes; c != http.StatusRequestTimeout {
			t.Errorf("trickling body answered %d, want 408", c)
		}
	}
}

// TestBodyBudgetRefuses fills the byte budget with a half-sent body and
// checks that a body which does not fit gets 503 + Retry-After while a
// small one still passes.
func TestBodyBudgetRefuses(t *testing.T) {
	ts := startServer(t, Config{MaxBody: 256 << 10, BodyBudget: 600 << 10, BodyTimeout: 5 * time.Second}, newFake())
	addr := strings.TrimPrefix(ts.url, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n", 256<<10)
	c.Write(make([]byte, 250<<10)) // then stall
	waitFor(t, "the stalled body to hold the budget", func() bool { return ts.budget.held.Load() >= 250<<10 })
	big := bytes.Repeat([]byte{1}, 250<<10)
	r := do(t, "POST", ts.url+"/v1/classify", "image/png", big)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "memory budget") {
		t.Errorf("upload past the budget: %d %q (Retry-After %q), want 503 naming the memory budget", r.code, r.body, r.header.Get("Retry-After"))
	}
	img, _ := testImage(t, 100)
	if r := do(t, "POST", ts.url+"/v1/classify", "image/png", img); r.code != http.StatusOK {
		t.Errorf("small upload beside the stalled one: %d %s, want 200", r.code, r.body)
	}
	if r := do(t, "POST", ts.url+"/v1/classify", "image/png", make([]byte, 300<<10)); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("body over -max-body: %d, want 413", r.code)
	}
}

// TestRequestDeadlineAndHangUp checks that a request stuck in the model
// answers 504 at RequestTimeout, and that one whose client leaves is
// counted as 499, not 503.
func TestRequestDeadlineAndHangUp(t *testing.T) {
	fake := newFake()
	fake.gate = make(chan struct{})
	ts := startServer(t, Config{MaxBatch: 1, MaxDelay: -1, RequestTimeout: 300 * time.Millisecond}, fake)
	img, _ := testImage(t, 100)
	start := time.Now()
	r := do(t, "POST", ts.url+"/v1/classify", "image/png", img)
	if r.code != http.StatusGatewayTimeout || !strings.Contains(string(r.body), "request deadline") {
		t.Errorf("request stuck in the model: %d %s, want 504 naming the deadline", r.code, r.body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the 300ms deadline answered after %v", d)
	}
	close(fake.gate) // let the worker finish the abandoned pass

	fake2 := newFake()
	fake2.started = make(chan int, 1)
	fake2.gate = make(chan struct{})
	ts2 := startServer(t, Config{MaxBatch: 1, MaxDelay: -1}, fake2)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts2.url+"/v1/classify", bytes.NewReader(img))
	req.Header.Set("Content-Type", "image/png")
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-fake2.started
	cancel()
	<-done
	waitFor(t, "the hang-up to be counted", func() bool {
		return containsLine(string(do(t, "GET", ts2.url+"/metrics", "", nil).body),
			`fashion_http_requests_total{code="499",route="POST /v1/classify"} 1`)
	})
	close(fake2.gate)
}

// TestRouterErrorsAreJSON checks that the mux's own 404 and 405 answer
// JSON like every other error.
func TestRouterErrorsAreJSON(t *testing.T) {
	ts := startServer(t, Config{}, newFake())
	for _, tt := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"GET", "/no-such-page", http.StatusNotFound, "no endpoint at /no-such-page"},
		{"DELETE", "/v1/classify", http.StatusMethodNotAllowed, "allowed: POST"},
		{"POST", "/healthz", http.StatusMethodNotAllowed, "allowed: GET"},
	} {
		r := do(t, tt.method, ts.url+tt.path, "", nil)
		ct := r.header.Get("Content-Type")
		e := decode[errorBody](t, r)
		if r.code != tt.code || ct != "application/json" || !strings.Contains(e.Error, tt.want) {
			t.Errorf("%s %s: %d %s %q, want %d JSON containing %q", tt.method, tt.path, r.code, ct, e.Error, tt.code, tt.want)
		}
	}
}

// TestConnLimitEvictsIdle opens more idle connections than MaxConns and
// checks that a new client is still served, the idle ones are closed to
// make room, and the server never keeps more than the limit.
func TestConnLimitEvictsIdle(t *testing.T) {
	ts := startServer(t, Config{MaxConns: 8}, newFake())
	addr := strings.TrimPrefix(ts.url, "http://")
	var idle []net.Conn
	for range 40 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	waitFor(t, "the server to accept the idle connections", func() bool { return ts.conns.evicted.Load() >= 32 })
	if n := ts.conns.count(); n > 8 {
		t.Errorf("%d connections open, limit 8", n)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(ts.url + "/healthz")
	if err != nil {
		t.Fatalf("new client beside 40 idle connections: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("new client: status %d", resp.StatusCode)
	}
}
