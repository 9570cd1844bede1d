package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// newTestBatcher returns a batcher over pred with cfg's batching settings,
// stopped when the test ends.
func newTestBatcher(t *testing.T, cfg Config, pred Predictor) *batcher {
	t.Helper()
	cfg = cfg.withDefaults()
	b := newBatcher(pred, len(pred.Info().Classes), cfg, newServerMetrics(), slog.New(slog.DiscardHandler))
	t.Cleanup(b.close)
	return b
}

// images returns n normalised inputs whose fake classes are known.
func images(t *testing.T, info modelfile.Info, vals ...uint8) ([]float32, []int) {
	x := make([]float32, 0, len(vals)*modelfile.Pixels)
	want := make([]int, len(vals))
	for i, v := range vals {
		_, pix := testImage(t, v)
		n := make([]float32, modelfile.Pixels)
		info.Normalize(n, pix)
		x = append(x, n...)
		want[i] = expectedClass(pix)
	}
	return x, want
}

// waitFor polls cond until it holds or a second passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatcherFormsBatches holds the model busy while requests pile up and
// checks they then run as one batch, each getting its own rows.
func TestBatcherFormsBatches(t *testing.T) {
	fake := newFake()
	fake.started = make(chan int, 16)
	fake.gate = make(chan struct{})
	b := newTestBatcher(t, Config{MaxBatch: 8, MaxDelay: time.Second, Queue: 64}, fake)
	info := fake.Info()

	type answer struct {
		i     int
		probs []float32
		err   error
	}
	answers := make(chan answer, 9)
	vals := []uint8{0, 255, 100, 200, 150, 255, 0, 100, 200}
	submit := func(i int) {
		x, _ := images(t, info, vals[i])
		p, err := b.submit(context.Background(), nil, x, 1)
		answers <- answer{i, p, err}
	}
	go submit(0)
	if n := <-fake.started; n != 1 {
		t.Fatalf("first batch has %d images, want 1", n)
	}
	for i := 1; i < 9; i++ {
		go submit(i)
	}
	waitFor(t, "8 queued requests", func() bool { return b.queueLen() == 8 })
	fake.gate <- struct{}{} // finish the first batch
	if n := <-fake.started; n != 8 {
		t.Errorf("second batch has %d images, want all 8 queued", n)
	}
	fake.gate <- struct{}{}
	for range 9 {
		a := <-answers
		if a.err != nil {
			t.Fatalf("request %d: %v", a.i, a.err)
		}
		_, pix := testImage(t, vals[a.i])
		c := expectedClass(pix)
		if len(a.probs) != 10 || a.probs[c] != 0.55 {
			t.Errorf("request %d got %v, want class %d", a.i, a.probs, c)
		}
	}
	if got := fake.batchSizes(); !slices.Equal(got, []int{1, 8}) {
		t.Errorf("batch sizes %v, want [1 8]", got)
	}
}

func TestBatcherSplitsAndCarries(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		jobs     []int // images per concurrent submission
		want     []int // batch sizes, sorted
	}{
		{"oversized job runs in chunks", 4, []int{10}, []int{2, 4, 4}},
		{"jobs that do not fit wait for the next batch", 4, []int{3, 3}, []int{3, 3}},
		{"jobs that fit share a batch", 8, []int{3, 3}, []int{6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake()
			fake.started = make(chan int, 16)
			fake.gate = make(chan struct{})
			b := newTestBatcher(t, Config{MaxBatch: tt.maxBatch, MaxDelay: -1}, fake)
			// Occupy the worker so the jobs under test queue up together.
			var wg sync.WaitGroup
			x1, _ := images(t, fake.Info(), 0)
			wg.Go(func() { b.submit(context.Background(), nil, x1, 1) })
			<-fake.started
			errs := make(chan error, len(tt.jobs))
			for _, n := range tt.jobs {
				vals := make([]uint8, n)
				for i := range vals {
					vals[i] = uint8(i * 25)
				}
				x, want := images(t, fake.Info(), vals...)
				wg.Go(func() {
					p, err := b.submit(context.Background(), nil, x, n)
					if err == nil {
						for i, c := range want {
							if p[i*10+c] != 0.55 {
								err = fmt.Errorf("image %d of %d: wrong row %v", i, n, p[i*10:i*10+10])
							}
						}
					}
					errs <- err
				})
			}
			waitFor(t, "queued jobs", func() bool { return b.queueLen() == len(tt.jobs) })
			go func() {
				for range fake.started {
				}
			}()
			close(fake.gate)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			got := fake.batchSizes()[1:]
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("batch sizes %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBatcherWaitsOnlyForAnnouncedRequests checks the max-delay heuristic:
// a lone request is not delayed, and a forming batch waits for a request
// that announced itself.
func TestBatcherWaitsOnlyForAnnouncedRequests(t *testing.T) {
	fake := newFake()
	b := newTestBatcher(t, Config{MaxBatch: 8, MaxDelay: 5 * time.Second}, fake)
	x, _ := images(t, fake.Info(), 100)

	start := time.Now()
	if _, err := b.submit(context.Background(), nil, x, 1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a lone request took %v with max-delay 5s; it must not wait", d)
	}

	tk := b.announce(1)
	done := make(chan error, 1)
	go func() { _, err := b.submit(context.Background(), nil, x, 1); done <- err }()
	waitFor(t, "the first request to be taken", func() bool { return b.queueLen() == 0 })
	time.Sleep(20 * time.Millisecond)
	if _, err := b.submit(context.Background(), &tk, x, 1); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := fake.batchSizes(); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("batch sizes %v, want [1 2]: the batch should have waited for the announced request", got)
	}
}

// TestBatcherSkipsCancelled checks that a request abandoned while queued
// returns at once and never reaches the model.
func TestBatcherSkipsCancelled(t *testing.T) {
	fake := newFake()
	fake.started = make(chan int, 4)
	fake.gate = make(chan struct{}, 4)
	b := newTestBatcher(t, Config{MaxBatch: 8, MaxDelay: -1}, fake)
	x, _ := images(t, fake.Info(), 100)

	first := make(chan error, 1)
	go func() { _, err := b.submit(context.Background(), nil, x, 1); first <- err }()
	<-fake.started

	ctx, cancel := context.WithCancel(context.Background())
	abandoned := make(chan error, 1)
	go func() { _, err := b.submit(ctx, nil, x, 1); abandoned <- err }()
	waitFor(t, "the second request to queue", func() bool { return b.queueLen() == 1 })
	cancel()
	select {
	case err := <-abandoned:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("abandoned request: %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("abandoned request still waiting 1s after cancel")
	}
	fake.gate <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	fake.gate <- struct{}{}
	if _, err := b.submit(context.Background(), nil, x, 1); err != nil {
		t.Fatal(err)
	}
	<-fake.started
	if got := fake.batchSizes(); !slices.Equal(got, []int{1, 1}) {
		t.Errorf("batch sizes %v, want [1 1]: the cancelled request must not run", got)
	}
}

// TestQueueFull fills the one-slot queue while the model is busy and checks
// the next request gets 503 with Retry-After, fast.
func TestQueueFull(t *testing.T) {
	fake := newFake()
	fake.started = make(chan int, 4)
	fake.gate = make(chan struct{}, 4)
	// Admission control would refuse the second request before it reaches
	// the batcher; lift it to test the batcher's own bound.
	ts := startServer(t, Config{MaxBatch: 1, Queue: 1, MaxInFlight: 10, MaxDelay: -1}, fake)
	img, _ := testImage(t, 100)

	codes := make(chan int, 2)
	post := func() { codes <- do(t, "POST", ts.url+"/v1/classify", "image/png", img).code }
	go post()
	<-fake.started
	go post()
	waitFor(t, "a queued request", func() bool { return ts.defaultBatcher(t).queueLen() == 1 })

	start := time.Now()
	r := do(t, "POST", ts.url+"/v1/classify", "image/png", img)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("full queue: status %d, Retry-After %q; want 503 with Retry-After", r.code, r.header.Get("Retry-After"))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal took %v; it must not wait", d)
	}
	fake.gate <- struct{}{}
	fake.gate <- struct{}{}
	for range 2 {
		if c := <-codes; c != 200 {
			t.Errorf("accepted request: status %d", c)
		}
	}
	m := string(do(t, "GET", ts.url+"/metrics", "", nil).body)
	if !containsLine(m, "fashion_queue_rejected_total 1") {
		t.Error("/metrics does not count the rejection")
	}
}

// TestShutdownDrains checks graceful shutdown: readiness turns false while
// the server still answers, and an in-flight request completes.
func TestShutdownDrains(t *testing.T) {
	fake := newFake()
	fake.started = make(chan int, 4)
	fake.gate = make(chan struct{}, 4)
	ts := startServer(t, Config{DrainDelay: 300 * time.Millisecond}, fake)
	img, pix := testImage(t, 200)

	inflight := make(chan response, 1)
	go func() { inflight <- do(t, "POST", ts.url+"/v1/classify", "image/png", img) }()
	<-fake.started

	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop(t) }()
	waitFor(t, "readiness to turn false", func() bool {
		return do(t, "GET", ts.url+"/readyz", "", nil).code == http.StatusServiceUnavailable
	})
	if r := do(t, "GET", ts.url+"/v2/health/ready", "", nil); r.code != http.StatusServiceUnavailable {
		t.Errorf("/v2/health/ready during drain: %d, want 503", r.code)
	}
	if r := do(t, "GET", ts.url+"/healthz", "", nil); r.code != 200 {
		t.Errorf("/healthz during drain: %d, want 200 (the process is alive)", r.code)
	}
	fake.gate <- struct{}{}
	r := <-inflight
	if r.code != 200 || decode[Result](t, r).ClassID != expectedClass(pix) {
		t.Errorf("in-flight request: status %d %s; want it answered", r.code, r.body)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve returned %v after a clean shutdown", err)
	}
	if _, err := http.Get(ts.url + "/healthz"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
}

func containsLine(text, line string) bool {
	return slices.Contains(strings.Split(text, "\n"), line)
}

// TestBatcherAdmitsByImages checks the queue bound counts images, not
// requests, and that a request bigger than the bound still runs when the
// queue is empty.
func TestBatcherAdmitsByImages(t *testing.T) {
	fake := newFake()
	fake.started = make(chan int, 8)
	fake.gate = make(chan struct{}, 8)
	b := newTestBatcher(t, Config{MaxBatch: 8, Queue: 4, MaxDelay: -1}, fake)
	info := fake.Info()
	var wg sync.WaitGroup
	defer wg.Wait()
	submit := func(n int) chan error {
		x, _ := images(t, info, make([]uint8, n)...)
		errc := make(chan error, 1)
		wg.Go(func() { _, err := b.submit(context.Background(), nil, x, n); errc <- err })
		return errc
	}
	busy := submit(1)
	<-fake.started // the worker is now held in Predict

	three := submit(3)
	waitFor(t, "3 queued images", func() bool { return b.queuedImages() == 3 })
	if err := <-submit(2); !errors.Is(err, errQueueFull) {
		t.Errorf("2 more images with 3 of 4 queued: %v, want errQueueFull", err)
	}
	one := submit(1)
	waitFor(t, "4 queued images", func() bool { return b.queuedImages() == 4 })

	for range 2 {
		fake.gate <- struct{}{}
	}
	for _, c := range []chan error{busy, three, one} {
		if err := <-c; err != nil {
			t.Error(err)
		}
	}
	<-fake.started
	if b.queuedImages() != 0 {
		t.Errorf("%d images still counted as queued", b.queuedImages())
	}

	fake.gate <- struct{}{}
	if err := <-submit(6); err != nil {
		t.Errorf("6 images into an empty queue bounded at 4: %v, want admitted", err)
	}
}

// TestStopRightAfterStart checks a shutdown that comes before the gRPC
// server has begun serving is a clean stop, not an error (it was one in CI:
// "gRPC: grpc: the server has been stopped").
func TestStopRightAfterStart(t *testing.T) {
	for i := range 50 {
		ts := startServer(t, Config{}, newFake())
		if err := ts.stop(t); err != nil {
			t.Fatalf("start %d: stop right after start: %v", i, err)
		}
	}
}
