package nn

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkConv measures the 3×3 convolutions of the default network on a
// training batch of 128: forward, and backward (weight and input
// gradients), reporting GFLOP/s of the convolution arithmetic
// (2·MACs forward, 4·MACs backward).
func BenchmarkConv(b *testing.B) {
	shapes := []struct{ side, in, out int }{{28, 32, 32}, {14, 64, 64}, {7, 64, 128}}
	for _, s := range shapes {
		rng := rand.New(rand.NewPCG(1, 2))
		c := NewConv2D(rng, s.in, s.out, 3, 1, 1, false)
		x := randTensor(rng, 128, s.side, s.side, s.in)
		macs := float64(128*s.side*s.side) * float64(9*s.in*s.out)
		name := fmt.Sprintf("%dx%d_%d-%d", s.side, s.side, s.in, s.out)
		b.Run("forward/"+name, func(b *testing.B) {
			for b.Loop() {
				c.Forward(x, true)
			}
			b.ReportMetric(2*macs*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		y := c.Forward(x, true)
		dy := randTensor(rng, y.N, y.H, y.W, y.C)
		b.Run("backward/"+name, func(b *testing.B) {
			for b.Loop() {
				c.Backward(dy)
			}
			b.ReportMetric(4*macs*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
