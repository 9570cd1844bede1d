package infer_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/infer"
)

// BenchmarkPredict runs the compiled VGG and ResNet-20 (random weights:
// the kernels' speed does not depend on them) at batch 1, the latency of
// a lone request, and batch 256, in images per second. Profile batch 1
// with -cpuprofile to see per-call overheads.
func BenchmarkPredict(b *testing.B) {
	for _, name := range []string{"vgg", "resnet20"} {
		a, err := arch.LookupArch(name)
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		net := a.Build(rng, 10)
		randomise(rng, net)
		prog, err := infer.Compile(net, 28, 28, 1)
		if err != nil {
			b.Fatal(err)
		}
		pr := infer.NewPredictor(prog)
		for _, n := range []int{1, 256} {
			x := make([]float32, n*prog.InSize())
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			b.Run(fmt.Sprintf("%s/batch=%d", name, n), func(b *testing.B) {
				if _, err := pr.Predict(x, n); err != nil { // size the buffers
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := pr.Predict(x, n); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "img/s")
			})
		}
	}
}
