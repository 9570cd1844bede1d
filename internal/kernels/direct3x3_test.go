package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"testing"
)

func TestConv3x3DirectMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	type shape struct{ n, h, w, c, m int }
	for _, sh := range []shape{{1, 1, 1, 1, 32}, {2, 5, 7, 1, 32}, {1, 28, 28, 1, 32}, {3, 9, 6, 3, 64}, {1, 4, 13, 5, 96}} {
		src := randVec(rng, sh.n*sh.h*sh.w*sh.c)
		wt := randVec(rng, 9*sh.c*sh.m)
		bias := randVec(rng, sh.m)
		for ai, a := range []Act{{}, ReLU, HardSwish} {
			b := bias
			if ai == 0 {
				b = nil
			}
			want, mag := conv3x3Ref(src, wt, b, a, sh.n, sh.h, sh.w, sh.c, sh.m)
			var ep *Epilogue
			if b != nil || a.Kind != ActNone {
				ep = NewEpilogue(b, a)
			}
			for _, asm := range []bool{false, winoAsm} {
				for _, workers := range []int{1, 3} {
					name := fmt.Sprintf("%+v/act%d/asm=%v/workers=%d", sh, a.Kind, asm, workers)
					dst := make([]float32, len(want)+2)
					for i := range dst {
						dst[i] = float32(math.NaN())
					}
					var s Scratch
					conv3x3Direct(dst, src, sh.n, sh.h, sh.w, sh.c, sh.m, wt, ep, &s, workers, asm)
					for i := range want {
						if d := math.Abs(float64(dst[i]) - want[i]); !(d <= 2e-6*mag[i]) {
							t.Fatalf("%s: out[%d] = %v, want %v", name, i, dst[i], want[i])
						}
					}
					for i := len(want); i < len(dst); i++ {
						if !math.IsNaN(float64(dst[i])) {
							t.Fatalf("%s: wrote past the output, at %d", name, i)
						}
					}
				}
			}
		}
	}
}

func TestConv3x3DirectSteadyStateDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	rng := rand.New(rand.NewPCG(19, 20))
	src, wt, dst := randVec(rng, 28*28), randVec(rng, 9*32), make([]float32, 28*28*32)
	ep := NewEpilogue(randVec(rng, 32), ReLU)
	var s Scratch
	conv3x3Direct(dst, src, 1, 28, 28, 1, 32, wt, ep, &s, 1, winoAsm)
	if n := testing.AllocsPerRun(20, func() { conv3x3Direct(dst, src, 1, 28, 28, 1, 32, wt, ep, &s, 1, winoAsm) }); n > 0 {
		t.Fatalf("allocated %v times per call", n)
	}
}
