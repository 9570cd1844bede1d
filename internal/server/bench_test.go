package server

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// nopPredictor answers instantly, so benchmarks measure only the server's
// own per-request work: decoding, normalising, batching, encoding, logging
// and metrics.
type nopPredictor struct{ info modelfile.Info }

func (p nopPredictor) Info() modelfile.Info { return p.info }

func (p nopPredictor) Predict(x []float32, n int) ([]float32, error) {
	out := make([]float32, n*len(p.info.Classes))
	for i := range out {
		out[i] = 0.1
	}
	return out, nil
}

// BenchmarkClassifyUpload measures the handler path of POST /v1/classify
// with a 28×28 PNG, without the model and without the network.
func BenchmarkClassifyUpload(b *testing.B) {
	s, err := New(Config{}, nopPredictor{newFake().Info()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	img, _ := testImage(b, 200)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/v1/classify", bytes.NewReader(img))
			req.Header.Set("Content-Type", "image/png")
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}
