package nn

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/cputime"
	"github.com/fashion-classifier/fashion/internal/kernels"
)

// BenchmarkConv measures the 3×3 convolutions of the default network on a
// training batch of 128: forward, and backward (weight and input
// gradients), reporting GFLOP/s of the convolution arithmetic
// (2·MACs forward, 4·MACs backward; the first layer computes no input
// gradient, so 2·MACs) and, because wall-clock rates mean little on a
// shared machine, CPU-milliseconds per call.
func BenchmarkConv(b *testing.B) {
	shapes := []struct{ side, in, out int }{{28, 1, 32}, {28, 32, 32}, {14, 32, 64}, {14, 64, 64}, {7, 64, 128}}
	for _, s := range shapes {
		rng := rand.New(rand.NewPCG(1, 2))
		c := NewConv2D(rng, s.in, s.out, 3, 1, 1, false)
		c.NoInputGrad = s.in == 1
		x := randTensor(rng, 128, s.side, s.side, s.in)
		macs := float64(128*s.side*s.side) * float64(9*s.in*s.out)
		name := fmt.Sprintf("%dx%d_%d-%d", s.side, s.side, s.in, s.out)
		b.Run("forward/"+name, func(b *testing.B) {
			cpu0, ok0 := cputime.Process()
			for b.Loop() {
				c.Forward(x, true)
			}
			b.ReportMetric(2*macs*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			reportCPU(b, cpu0, ok0)
		})
		y := c.Forward(x, true)
		dy := randTensor(rng, y.N, y.H, y.W, y.C)
		bwd := 4 * macs
		if c.NoInputGrad {
			bwd = 2 * macs
		}
		b.Run("backward/"+name, func(b *testing.B) {
			cpu0, ok0 := cputime.Process()
			for b.Loop() {
				c.Backward(dy)
			}
			b.ReportMetric(bwd*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			reportCPU(b, cpu0, ok0)
		})
	}
}

// reportCPU reports the process CPU time per iteration since cpu0, which
// on a busy machine tracks the work done far better than wall time.
func reportCPU(b *testing.B, cpu0 time.Duration, ok0 bool) {
	if cpu1, ok := cputime.Process(); ok && ok0 && b.N > 0 {
		b.ReportMetric(float64(cpu1-cpu0)/1e6/float64(b.N), "cpu-ms/op")
	}
}

// BenchmarkConvPaths compares the ways of computing a stride-1 same
// convolution (im2col, the padded layout, and what Conv2D picks by
// default: Winograd for 8 or more channels, the direct kernel's forward
// pass for the first layer) on the default network's layers, forward plus
// backward, in CPU-milliseconds per step; it is what padMinPixels and the
// other choices in Conv2D.padded are based on.
func BenchmarkConvPaths(b *testing.B) {
	shapes := []struct{ side, in, out int }{{28, 1, 32}, {28, 32, 32}, {14, 32, 64}, {14, 64, 64}, {7, 64, 128}}
	for _, s := range shapes {
		for _, path := range []struct {
			name string
			p    kernels.ConvPath
		}{{"im2col", kernels.ConvIm2col}, {"padded", kernels.ConvPadded}, {"auto", kernels.ConvAuto}} {
			rng := rand.New(rand.NewPCG(1, 2))
			c := NewConv2D(rng, s.in, s.out, 3, 1, 1, false)
			c.NoInputGrad = s.in == 1
			c.path = path.p
			x := randTensor(rng, 128, s.side, s.side, s.in)
			y := c.Forward(x, true)
			dy := randTensor(rng, y.N, y.H, y.W, y.C)
			b.Run(fmt.Sprintf("%dx%d_%d-%d/%s", s.side, s.side, s.in, s.out, path.name), func(b *testing.B) {
				cpu0, ok0 := cputime.Process()
				for b.Loop() {
					c.Forward(x, true)
					c.Backward(dy)
				}
				reportCPU(b, cpu0, ok0)
			})
		}
	}
}

func BenchmarkBatchNorm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	bn := NewBatchNorm(32)
	bn.ReLU = true
	x := randTensor(rng, 128, 28, 28, 32)
	dy := randTensor(rng, 128, 28, 28, 32)
	b.Run("forward", func(b *testing.B) {
		for b.Loop() {
			bn.Forward(x, true)
		}
	})
	b.Run("backward", func(b *testing.B) {
		for b.Loop() {
			bn.Backward(dy)
		}
	})
}
