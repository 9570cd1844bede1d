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
	for _, sh := range []shape{{1, 1, 1, 1, 32}, {2, 5, 7, 1, 32}, {1, 28, 28, 1, 32}, {3, 9, 6, 3, 64}, {1, 4, 13, 5, 96}} {
		src := randVec(rng, sh.n*sh.h*sh.w*sh.c)
		wt := randVec(rng, 9*sh.c*sh.m)
		bias := randVec(rng, sh.m)
		for _, tc := range conv3x3Cases(src, wt, bias, sh.n, sh.h, sh.w, sh.c, sh.m) {
			for _, asm := range []bool{false, winoAsm} {
				for _, workers := range []int{1, 3} {
					name := fmt.Sprintf("%+v/act%d/asm=%v/workers=%d", sh, tc.act.Kind, asm, workers)
					dst := guardedOutput(len(tc.want), 2)
					var s Scratch
					conv3x3Direct(dst, src, sh.n, sh.h, sh.w, sh.c, sh.m, wt, tc.ep, &s, workers, asm)
					checkGuarded(t, name, dst, tc.want, tc.mag, 2e-6)
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
