package loadgen

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/x", true},
		{"http://127.0.0.2/x", true},
		{"http://[::1]:80/", true},
		{"http://localhost:9/", true},
		{"http://[::ffff:127.0.0.1]:80/", true},
		{"http://10.0.0.1/", false},
		{"http://169.254.169.254/latest", false},
		{"http://192.168.1.1:8080/", false},
		{"http://example.com/", false},
		{"https://127.0.0.1/", false},
		{"http://[::2]/", false},
		{"::::", false},
	}
	for _, tc := range tests {
		err := CheckLoopback(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
	if err := CheckLoopback("http://8.8.8.8/"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("refusal %v does not wrap ErrNotLoopback", err)
	}
}

// TestDialerRefusesNonLoopback checks the second line of defence: even a
// request the URL check would not see (a hand-built one) cannot be dialled.
func TestDialerRefusesNonLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:80", true},
		{"[::1]:80", true},
		{"10.1.2.3:80", false},
		{"[fe80::1]:80", false},
		{"example.com:80", false},
	}
	for _, tc := range tests {
		err := loopbackOnly("tcp", tc.addr, nil)
		if (err == nil) != tc.ok {
			t.Errorf("loopbackOnly(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

func TestRunRefusesNonLoopbackTargets(t *testing.T) {
	c := NewClient(1)
	tgt := Target{Name: "remote", URL: "http://192.0.2.1/"}
	if _, err := RunClosed(context.Background(), c, tgt, Closed{Concurrency: 1, Duration: time.Second}); err == nil {
		t.Error("RunClosed accepted a non-loopback target")
	}
	if _, err := RunOpen(context.Background(), c, tgt, Open{Rate: 1, Duration: time.Second, MaxInFlight: 1}); err == nil {
		t.Error("RunOpen accepted a non-loopback target")
	}
}

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(lat)
	want := Stats{Count: 100, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if s := Summarize(nil); s != (Stats{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", s)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tc := range tests {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRunsAreBoundedAndCount(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	c := NewClient(4)
	tgt := Target{Name: "test", URL: srv.URL}
	r, err := RunClosed(context.Background(), c, tgt, Closed{Concurrency: 1, Duration: 5 * time.Second, MaxRequests: 10})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 10 || len(r.OK) != 5 || len(r.Rejected) != 5 || r.RejectedNoRetryAfter != 0 || r.Status[200] != 5 {
		t.Errorf("closed run: sent %d, ok %d, rejected %d (no Retry-After %d), statuses %v; want 10, 5, 5 (0)", r.Sent, len(r.OK), len(r.Rejected), r.RejectedNoRetryAfter, r.Status)
	}
	o, err := RunOpen(context.Background(), c, tgt, Open{Rate: 200, Duration: 300 * time.Millisecond, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	if total := o.Sent + o.Dropped; total < 40 || total > 61 {
		t.Errorf("open run at 200/s for 0.3s: %d sent + %d dropped, want about 60", o.Sent, o.Dropped)
	}
	if o.Elapsed > 2*time.Second {
		t.Errorf("open run of 0.3s took %v", o.Elapsed)
	}
}

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 17\n" +
			"process_resident_memory_bytes 2.5e+07\nfoo{a=\"b\"} 3\n"))
	}))
	defer srv.Close()
	got, err := Scrape(context.Background(), NewClient(1), srv.URL, "go_goroutines", "process_resident_memory_bytes")
	if err != nil {
		t.Fatal(err)
	}
	if got["go_goroutines"] != 17 || got["process_resident_memory_bytes"] != 25e6 {
		t.Errorf("Scrape = %v", got)
	}
	if _, err := Scrape(context.Background(), NewClient(1), srv.URL, "absent_series"); err == nil {
		t.Error("Scrape did not report a missing series")
	}
}
