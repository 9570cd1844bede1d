package train

import (
	"math/rand/v2"
	"testing"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/cputime"
	"github.com/fashion-classifier/fashion/internal/nn"
	"github.com/fashion-classifier/fashion/internal/optim"
)

// BenchmarkTrainStep measures one SGD step (forward, loss, backward,
// update) of each architecture on a batch of 128 random images, reporting
// images per second and, because wall time means little on a shared
// machine, process CPU-milliseconds per step.
func BenchmarkTrainStep(b *testing.B) {
	for _, name := range []string{"vgg", "resnet20", "mobilenetv3-small", "mobilenetv3-small-28"} {
		b.Run(name, func(b *testing.B) {
			a, err := arch.LookupArch(name)
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			net := a.Build(rng, 10)
			params := net.Params()
			opt := &optim.SGD{Momentum: 0.9, Nesterov: true, WeightDecay: 5e-4}
			const bs = 128
			x := nn.NewTensor(bs, 28, 28, 1)
			for i := range x.Data {
				x.Data[i] = float32(rng.NormFloat64())
			}
			labels := make([]uint8, bs)
			for i := range labels {
				labels[i] = uint8(rng.IntN(10))
			}
			ce := &nn.CrossEntropy{Smoothing: 0.1}
			b.ResetTimer()
			cpu0, ok0 := cputime.Process()
			for range b.N {
				_, g, _ := ce.Loss(net.Forward(x, true), labels)
				net.Backward(g)
				opt.Step(params, 0.01)
			}
			b.ReportMetric(float64(b.N*bs)/b.Elapsed().Seconds(), "img/s")
			if cpu1, ok := cputime.Process(); ok && ok0 && b.N > 0 {
				b.ReportMetric(float64(cpu1-cpu0)/1e6/float64(b.N), "cpu-ms/op")
			}
		})
	}
}
