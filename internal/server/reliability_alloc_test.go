package server

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// BenchmarkUploadHandler measures one POST /v1/classify through the whole
// handler stack with the real model, in-process: with -benchmem it gives
// the heap allocated per request, which with GOGC sets how far the
// server's heap (and RSS) grows under load.
func BenchmarkUploadHandler(b *testing.B) {
	for _, tc := range []struct {
		name string
		pred func(b *testing.B) Predictor
	}{
		{"fake", func(*testing.B) Predictor { return newFake() }},
		{"model", func(b *testing.B) Predictor {
			m, err := modelfile.Embedded()
			if err != nil {
				b.Fatal(err)
			}
			return m
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := New(Config{}, tc.pred(b), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			img, _ := testImage(b, 180)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/v1/classify", bytes.NewReader(img))
				req.Header.Set("Content-Type", "image/png")
				w := httptest.NewRecorder()
				s.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
				io.Copy(io.Discard, w.Body)
			}
		})
	}
}
