package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// weightGrad3x3Ref is the weight gradient of the direct 3×3, stride-1,
// padding-1 convolution in float64 ([3·3·c, m]); mag gets Σ|x·dy| per
// weight, the scale of the rounding error a fast version may make.
func weightGrad3x3Ref(x, dy []float32, n, h, w, c, m int) (dw, mag []float64) {
	dw, mag = make([]float64, 9*c*m), make([]float64, 9*c*m)
	for b := range n {
		for y := range h {
			for xx := range w {
				g := dy[((b*h+y)*w+xx)*m:][:m]
				for ky := range 3 {
					for kx := range 3 {
						iy, ix := y+ky-1, xx+kx-1
						if iy < 0 || iy >= h || ix < 0 || ix >= w {
							continue
						}
						in := x[((b*h+iy)*w+ix)*c:][:c]
						for ci, xv := range in {
							row := ((ky*3+kx)*c + ci) * m
							for mo, gv := range g {
								p := float64(xv) * float64(gv)
								dw[row+mo] += p
								mag[row+mo] += math.Abs(p)
							}
						}
					}
				}
			}
		}
	}
	return dw, mag
}

// TestWinograd3x3WeightGradMatchesDirect compares both algorithms' weight
// gradients, with the Go and the assembly transforms and several workers,
// with the direct one on odd sizes; the scratch memory is reused across
// calls to check that nothing is left over from a previous one.
func TestWinograd3x3WeightGradMatchesDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	type shape struct{ n, h, w, c, m int }
	shapes := []shape{
		{1, 1, 1, 8, 8}, {2, 5, 7, 3, 5}, {3, 6, 4, 8, 16}, {1, 13, 9, 24, 8}, {4, 11, 10, 9, 13},
		{3, 14, 14, 32, 64}, {5, 7, 7, 64, 40}, {2, 9, 5, 16, 1},
	}
	var s Scratch
	for _, sh := range shapes {
		x := randVec(rng, sh.n*sh.h*sh.w*sh.c)
		dy := randVec(rng, sh.n*sh.h*sh.w*sh.m)
		want, mag := weightGrad3x3Ref(x, dy, sh.n, sh.h, sh.w, sh.c, sh.m)
		for _, r := range []int{2, 4} {
			tol := 2e-6
			if r == 4 {
				tol = 2e-5
			}
			for _, asm := range []bool{false, winoAsm} {
				for _, workers := range []int{1, 2, 3} {
					name := fmt.Sprintf("%+v/F%d/asm=%v/workers=%d", sh, r, asm, workers)
					dw := guardedOutput(len(want), 3)
					winoWeightGrad(r, dw, x, dy, sh.n, sh.h, sh.w, sh.c, sh.m, &s, workers, asm)
					checkGuarded(t, name, dw, want, mag, tol)
				}
			}
		}
	}
}

// TestWino4GradOutputAsmMatchesGo compares the assembly adjoint output
// transform with the Go one (they differ only in fused multiply-adds'
// rounding), with zero pixels and a nonzero channel offset.
func TestWino4GradOutputAsmMatchesGo(t *testing.T) {
	if !winoAsm {
		t.Skip("no AVX2 on this CPU")
	}
	rng := rand.New(rand.NewPCG(21, 22))
	for _, m := range []int{8, 24, 64} {
		var d [16][]float32
		var dp [16]*float32
		for k := range 16 {
			d[k] = randVec(rng, m)
			if k%5 == 3 {
				clear(d[k])
			}
			dp[k] = &d[k][0]
		}
		ds := 3 * m
		goOut, asmOut := make([]float32, 36*ds), make([]float32, 36*ds)
		wino4GradOutputGo(&d, m, goOut, ds)
		tmp := make([]float32, 24*8)
		wino4GradOutputAVX2(&dp, 0, &asmOut[0], ds, &tmp[0], 1)
		if m > 8 {
			wino4GradOutputAVX2(&dp, 8, &asmOut[8], ds, &tmp[0], m/8-1)
		}
		for i := range goOut {
			if d := math.Abs(float64(goOut[i] - asmOut[i])); d > 1e-5*(1+math.Abs(float64(goOut[i]))) {
				t.Fatalf("m=%d: [%d] asm %v, Go %v", m, i, asmOut[i], goOut[i])
			}
		}
	}
}

// BenchmarkWinograd3x3WeightGrad reports the VGG-w32 weight-gradient
// shapes at batch 32 in equivalent direct GFLOP/s (2·9·C·M per pixel),
// Winograd's and the direct one (Conv.Backward without input gradient)
// side by side.
func BenchmarkWinograd3x3WeightGrad(b *testing.B) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, sh := range []struct{ hw, c, m int }{{28, 32, 32}, {14, 32, 64}, {14, 64, 64}, {7, 64, 128}} {
		const n = 32
		x, dy := randVec(rng, n*sh.hw*sh.hw*sh.c), randVec(rng, n*sh.hw*sh.hw*sh.m)
		wt, dw := randVec(rng, 9*sh.c*sh.m), make([]float32, 9*sh.c*sh.m)
		flops := 2 * 9 * sh.c * sh.m * sh.hw * sh.hw * n
		for _, method := range []string{"winograd", "direct"} {
			b.Run(fmt.Sprintf("%dx%dx%d-%d/n=%d/%s", sh.hw, sh.hw, sh.c, sh.m, n, method), func(b *testing.B) {
				var s Scratch
				conv := Conv{ConvShape: SquareConv(sh.c, sh.hw, sh.hw, sh.m, 3, 1, 1)}
				for b.Loop() {
					if method == "winograd" {
						Winograd3x3WeightGrad(dw, x, dy, n, sh.hw, sh.hw, sh.c, sh.m, &s)
					} else {
						conv.Backward(nil, dw, x, dy, n, wt, &s)
					}
				}
				b.ReportMetric(float64(flops)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
