package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingBody is a request body that remembers whether anyone read it.
type recordingBody struct {
	mu   sync.Mutex
	read bool
	r    io.Reader
}

func (b *recordingBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	b.read = true
	b.mu.Unlock()
	return b.r.Read(p)
}

func (b *recordingBody) Close() error { return nil }

func (b *recordingBody) wasRead() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read
}

// TestAdmissionRefusesBeforeReadingBody fills a server's only in-flight slot
// with a request held inside the model, then checks that every inference
// endpoint answers 503 with Retry-After at once without reading the body,
// that probes and metrics still answer, and that the slot is reusable once
// the held request finishes.
func TestAdmissionRefusesBeforeReadingBody(t *testing.T) {
	fake := newFake()
	fake.started = make(chan int, 1)
	fake.gate = make(chan struct{}, 2)
	ts := startServer(t, Config{MaxBatch: 1, Queue: 8, MaxInFlight: 1, MaxDelay: -1}, fake)
	img, _ := testImage(t, 100)

	held := make(chan int, 1)
	go func() { held <- do(t, "POST", ts.url+"/v1/classify", "image/png", img).code }()
	<-fake.started
	if n := ts.admission.inFlight.Load(); n != 1 {
		t.Fatalf("in flight while one request is in the model: %d, want 1", n)
	}

	mp, boundary := multipartBody(t, img)
	tests := []struct {
		name, method, target, contentType string
		body                              []byte
	}{
		{"raw upload", "POST", "/v1/classify", "image/png", img},
		{"multipart batch", "POST", "/v1/classify", "multipart/form-data; boundary=" + boundary, mp},
		{"JSON", "POST", "/v1/classify", "application/json", []byte(`{"images":[{"url":"http://127.0.0.1:1/x.png"}]}`)},
		{"v2 infer", "POST", "/v2/models/fashion-mnist/infer", "application/json", []byte(`{"inputs":[]}`)},
		{"v2 infer, versioned", "POST", "/v2/models/fashion-mnist/versions/1/infer", "application/json", []byte(`{"inputs":[]}`)},
		{"classify by URL", "GET", "/image-classify?url=http://127.0.0.1:1/x.png", "", nil},
		{"view by URL", "GET", "/image-view?url=http://127.0.0.1:1/x.png", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := &recordingBody{r: strings.NewReader(string(tt.body))}
			req := httptest.NewRequest(tt.method, tt.target, body)
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
			if body.wasRead() {
				t.Error("the refused request's body was read")
			}
			// A refusal does no I/O and no decoding: microseconds, with a
			// wide margin for -race and a busy machine.
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
		"fashion_admission_rejected_total " + strconv.Itoa(len(tests)),
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
	waitFor(t, "the slot to be released", func() bool { return ts.admission.inFlight.Load() == 0 })
	if r := do(t, "POST", ts.url+"/v1/classify", "image/png", img); r.code != http.StatusOK {
		t.Errorf("request after the slot freed: status %d, want 200; body %s", r.code, r.body)
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
