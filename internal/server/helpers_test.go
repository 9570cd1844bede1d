package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// fakePredictor is a deterministic stand-in for the model: the class is
// picked from the mean pixel brightness (see fakeClass), with probability
// 0.55 for it and 0.05 for each other class. It records batch sizes, and
// can hold every Predict until the test releases it.
type fakePredictor struct {
	info modelfile.Info

	mu      sync.Mutex
	batches []int

	// started, if not nil, receives n when a Predict call begins.
	started chan int
	// gate, if not nil, must yield a value before Predict returns.
	gate chan struct{}
	// panics makes Predict panic, to test recovery.
	panics bool
}

func newFake() *fakePredictor {
	return &fakePredictor{info: modelfile.Info{
		Name: "fake", Arch: "fake", Classes: modelfile.FashionClasses,
		Mean: modelfile.DefaultMean, Std: modelfile.DefaultStd, Source: "test",
		Precision: modelfile.PrecisionInt8, // as a quantized model reports it
		Storage:   modelfile.StorageF16,    // as a model with half-precision weights reports it
	}}
}

func (f *fakePredictor) Info() modelfile.Info { return f.info }

func (f *fakePredictor) Predict(x []float32, n int) ([]float32, error) {
	if f.started != nil {
		f.started <- n
	}
	if f.gate != nil {
		<-f.gate
	}
	if f.panics {
		panic("fake model exploded")
	}
	if len(x) != n*modelfile.Pixels {
		return nil, errors.New("fake: wrong input length")
	}
	f.mu.Lock()
	f.batches = append(f.batches, n)
	f.mu.Unlock()
	nc := len(f.info.Classes)
	out := make([]float32, n*nc)
	for i := range n {
		var sum float32
		for _, v := range x[i*modelfile.Pixels : (i+1)*modelfile.Pixels] {
			sum += v
		}
		mean := (sum/modelfile.Pixels*f.info.Std + f.info.Mean) * 255
		c := fakeClass(mean)
		for j := range nc {
			out[i*nc+j] = 0.05
		}
		out[i*nc+c] = 0.55
	}
	return out, nil
}

// batchSizes returns the sizes of the batches Predict has answered.
func (f *fakePredictor) batchSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.batches...)
}

// fakeClass maps a mean pixel value (0–255) to a class id.
func fakeClass(meanPixel float32) int {
	c := int(meanPixel+0.5) * 10 / 256
	return min(max(c, 0), 9)
}

// expectedClass is the class the fake gives for 28×28 pixels.
func expectedClass(pix []uint8) int {
	sum := 0
	for _, p := range pix {
		sum += int(p)
	}
	return fakeClass(float32(sum) / float32(len(pix)))
}

// testImage returns a dataset-like 28×28 image — black border, a centred
// 20×20 square of brightness v — as PNG bytes, with its pixels.
func testImage(t testing.TB, v uint8) ([]byte, []uint8) {
	t.Helper()
	g := image.NewGray(image.Rect(0, 0, modelfile.Side, modelfile.Side))
	for y := 4; y < 24; y++ {
		for x := 4; x < 24; x++ {
			g.SetGray(x, y, color.Gray{Y: v})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, g); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), g.Pix
}

// testServer is a Server running on a loopback port.
type testServer struct {
	*Server
	url      string
	grpcAddr string // host:port of the gRPC service
	cancel   context.CancelFunc
	done     chan error
	once     sync.Once
	stopErr  error
}

// stop cancels the server's context and waits for Serve to return.
func (ts *testServer) stop(t testing.TB) error {
	t.Helper()
	ts.once.Do(func() {
		ts.cancel()
		select {
		case ts.stopErr = <-ts.done:
		case <-time.After(10 * time.Second):
			ts.stopErr = errors.New("server did not shut down within 10s")
		}
	})
	return ts.stopErr
}

// startServer starts a server for pred on 127.0.0.1:0 and stops it when the
// test ends.
func startServer(t testing.TB, cfg Config, pred Predictor) *testServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := New(cfg, pred, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, url: "http://" + ln.Addr().String(), grpcAddr: gln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.ServeWithGRPC(ctx, ln, gln) }()
	t.Cleanup(func() {
		if err := ts.stop(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

// response is a finished HTTP exchange.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request and reads the whole answer.
func do(t testing.TB, method, url, contentType string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return send(t, req)
}

func send(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// decode unmarshals a JSON answer, failing the test on bad JSON.
func decode[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("answer is not the expected JSON (%v): %s", err, r.body)
	}
	return v
}

// defaultBatcher returns the batcher of the default model's served version.
func (s *Server) defaultBatcher(t testing.TB) *batcher {
	t.Helper()
	ref, err := s.repo.Acquire(s.cfg.ModelName, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Release()
	return ref.Model().batch
}
