package modelfile

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkPredict measures inference with the embedded default model
// (ResNet-20) and with model/vgg-w32.safetensors, the default before it:
// one image at a time (the latency of a lone request) and batches of 32
// and 256 (the server's micro-batches and offline evaluation), in images
// per second.
func BenchmarkPredict(b *testing.B) {
	def, err := Embedded()
	if err != nil {
		b.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join("..", "..", "model", "vgg-w32.safetensors"))
	if err != nil {
		b.Fatal(err)
	}
	d, err := Decode(file)
	if err != nil {
		b.Fatal(err)
	}
	vgg, err := New(d, "vgg-w32", "model/vgg-w32.safetensors")
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 32, 256} {
		x := make([]float32, n*Pixels)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		for _, m := range []struct {
			name string
			c    *Classifier
		}{{"default", def}, {"vgg-w32", vgg}} {
			b.Run(fmt.Sprintf("model=%s/batch=%d", m.name, n), func(b *testing.B) {
				for range b.N {
					if _, err := m.c.Predict(x, n); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "img/s")
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/batch")
			})
		}
	}
}
