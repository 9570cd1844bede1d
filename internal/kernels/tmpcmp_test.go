package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/cputime"
)

func cpuSince(c0 time.Duration) float64 {
	c, _ := cputime.Process()
	return (c - c0).Seconds()
}

func BenchmarkCmp(b *testing.B) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, sh := range []struct{ hw, c, m int }{{28, 32, 32}, {14, 32, 64}, {14, 64, 64}, {7, 64, 128}} {
		wt := randVec(rng, 9*sh.c*sh.m)
		wg := NewWinograd3x3(wt, sh.c, sh.m)
		ep := NewEpilogue(randVec(rng, sh.m), ReLU)
		for _, n := range []int{1, 8} {
			src, dst := randVec(rng, n*sh.hw*sh.hw*sh.c), make([]float32, n*sh.hw*sh.hw*sh.m)
			flops := 2 * 9 * sh.c * sh.m * sh.hw * sh.hw * n
			for _, f := range []*winoForm{&wg.f2, &wg.f4} {
				b.Run(fmt.Sprintf("F%d/%dx%dx%d-%d/n=%d", f.r, sh.hw, sh.hw, sh.c, sh.m, n), func(b *testing.B) {
					var s Scratch
					c0, _ := cputime.Process()
					for b.Loop() {
						wg.forward(f, dst, src, n, sh.hw, sh.hw, ep, &s, 1, true)
					}
					b.ReportMetric(float64(flops)*float64(b.N)/cpuSince(c0)/1e9, "GFLOP/cpus")
				})
			}
		}
	}
}
