package modelfile

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkPredict measures inference with the embedded model: one image
// at a time (the latency of a lone request) and batches of 32 and 256 (the
// server's micro-batches and offline evaluation), in images per second.
func BenchmarkPredict(b *testing.B) {
	c, err := Embedded()
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 32, 256} {
		x := make([]float32, n*Pixels)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		b.Run(map[int]string{1: "batch=1", 32: "batch=32", 256: "batch=256"}[n], func(b *testing.B) {
			for range b.N {
				if _, err := c.Predict(x, n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "img/s")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/batch")
		})
	}
}
