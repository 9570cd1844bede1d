package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"testing"
)

func TestConv3x3DirectMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	type shape struct{ n, h, w, c, m int }
	for _, sh := range []shape{{1, 1, 1, 1, 32}, {2, 5, 7, 1, 32}, {1, 28, 28, 1, 32}, {3, 9, 6, 3, 64}, {1, 4, 13, 5, 96},
		{1, 1, 1, 16, 16}, {2, 5, 7, 16, 16}, {1, 28, 28, 16, 16}, {3, 4, 31, 16, 16}} {
		src := randVec(rng, sh.n*sh.h*sh.w*sh.c)
		wt := randVec(rng, 9*sh.c*sh.m)
		bias := randVec(rng, sh.m)
		for _, tc := range conv3x3Cases(src, wt, bias, sh.n, sh.h, sh.w, sh.c, sh.m) {
			fast := winoAsm
			if sh.c == 16 && sh.m == 16 {
				fast = direct16Asm
			}
			for _, asm := range []bool{false, fast} {
				for _, workers := range []int{1, 3} {
					name := fmt.Sprintf("%+v/act%d/asm=%v/workers=%d", sh, tc.act.Kind, asm, workers)
					dst := guardedOutput(len(tc.want), 2)
					var s Scratch
					conv3x3Direct(dst, src, nil, sh.n, sh.h, sh.w, sh.c, sh.m, wt, tc.ep, &s, workers, asm)
					checkGuarded(t, name, dst, tc.want, tc.mag, 2e-6)
				}
			}
		}
	}
}

// TestConv3x3Direct16AddsResidual: the 16-channel kernel adds res before
// the ReLU (a residual block's sum), in assembly and in Go, on widths
// with and without a partial block of 14 pixels.
func TestConv3x3Direct16AddsResidual(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, hw := range [][2]int{{28, 28}, {5, 17}, {3, 1}} {
		n, h, w := 2, hw[0], hw[1]
		src, wt, bias := randVec(rng, n*h*w*16), randVec(rng, 9*16*16), randVec(rng, 16)
		res := randVec(rng, n*h*w*16)
		conv, mag := conv3x3Ref(src, wt, bias, Act{}, n, h, w, 16, 16)
		for _, relu := range []bool{false, true} {
			want := make([]float64, len(conv))
			for i, v := range conv {
				want[i] = v + float64(res[i])
				if relu {
					want[i] = max(want[i], 0)
				}
			}
			act := Act{}
			if relu {
				act = ReLU
			}
			for _, asm := range []bool{false, direct16Asm} {
				dst := guardedOutput(len(want), 2)
				var s Scratch
				conv3x3Direct(dst, src, res, n, h, w, 16, 16, wt, NewEpilogue(bias, act), &s, 2, asm)
				checkGuarded(t, fmt.Sprintf("%dx%d relu=%v asm=%v", h, w, relu, asm), dst, want, mag, 2e-6)
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
	conv3x3Direct(dst, src, nil, 1, 28, 28, 1, 32, wt, ep, &s, 1, winoAsm)
	if n := testing.AllocsPerRun(20, func() { conv3x3Direct(dst, src, nil, 1, 28, 28, 1, 32, wt, ep, &s, 1, winoAsm) }); n > 0 {
		t.Fatalf("allocated %v times per call", n)
	}
}
