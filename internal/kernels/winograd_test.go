package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"testing"
)

// conv3x3Ref is the direct 3×3, stride-1, padding-1 convolution in float64
// over NHWC data with weights [3·3·c, m], followed by bias and a; mag gets
// Σ|w·x| per output, the scale of the rounding error a fast version may
// make.
func conv3x3Ref(src, wt, bias []float32, a Act, n, h, w, c, m int) (out, mag []float64) {
	out, mag = make([]float64, n*h*w*m), make([]float64, n*h*w*m)
	for b := range n {
		for y := range h {
			for x := range w {
				for mo := range m {
					var s, g float64
					for ky := range 3 {
						for kx := range 3 {
							iy, ix := y+ky-1, x+kx-1
							if iy < 0 || iy >= h || ix < 0 || ix >= w {
								continue
							}
							for ci := range c {
								p := float64(src[((b*h+iy)*w+ix)*c+ci]) * float64(wt[((ky*3+kx)*c+ci)*m+mo])
								s += p
								g += math.Abs(p)
							}
						}
					}
					if bias != nil {
						s += float64(bias[mo])
					}
					o := ((b*h+y)*w+x)*m + mo
					out[o] = float64(a.Eval(float32(s)))
					mag[o] = g + 1
				}
			}
		}
	}
	return out, mag
}

// conv3x3Case is one expected output of the 3×3 convolution tests.
type conv3x3Case struct {
	act       Act
	ep        *Epilogue // nil without bias and activation: kernels accept a nil epilogue
	want, mag []float64 // conv3x3Ref's output and error scale
}

// conv3x3Cases returns the reference outputs with no epilogue (nil) and
// with bias followed by each activation.
func conv3x3Cases(src, wt, bias []float32, n, h, w, c, m int) []conv3x3Case {
	var cs []conv3x3Case
	for ai, a := range []Act{{}, ReLU, HardSwish} {
		b := bias
		if ai == 0 {
			b = nil
		}
		want, mag := conv3x3Ref(src, wt, b, a, n, h, w, c, m)
		var ep *Epilogue
		if b != nil || a.Kind != ActNone {
			ep = NewEpilogue(b, a)
		}
		cs = append(cs, conv3x3Case{act: a, ep: ep, want: want, mag: mag})
	}
	return cs
}

// guardedOutput returns n+extra NaNs: an output of n values followed by
// guards that checkGuarded expects untouched.
func guardedOutput(n, extra int) []float32 {
	dst := make([]float32, n+extra)
	for i := range dst {
		dst[i] = float32(math.NaN())
	}
	return dst
}

// checkGuarded fails the test unless dst's first len(want) values are
// within tol×mag of want and the guards after them are still NaN.
func checkGuarded(t *testing.T, name string, dst []float32, want, mag []float64, tol float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(dst[i]) - want[i]); !(d <= tol*mag[i]) {
			t.Fatalf("%s: out[%d] = %v, want %v (±%v)", name, i, dst[i], want[i], tol*mag[i])
		}
	}
	for i := len(want); i < len(dst); i++ {
		if !math.IsNaN(float64(dst[i])) {
			t.Fatalf("%s: wrote past the output, at %d", name, i)
		}
	}
}

func TestWinograd3x3MatchesDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	type shape struct{ n, h, w, c, m int }
	shapes := []shape{
		{1, 1, 1, 8, 8}, {1, 2, 3, 1, 1}, {2, 5, 7, 3, 5}, {1, 7, 7, 16, 40}, {3, 6, 4, 8, 16},
		{2, 14, 14, 32, 64}, {1, 13, 9, 24, 8}, {1, 28, 28, 8, 32}, {5, 3, 3, 64, 128}, {1, 4, 5, 72, 96},
	}
	workerCounts := []int{1, 2, 3}
	if testing.Short() {
		workerCounts = []int{1, 3} // one and more workers than tasks fit evenly
	}
	for _, sh := range shapes {
		src := randVec(rng, sh.n*sh.h*sh.w*sh.c)
		wt := randVec(rng, 9*sh.c*sh.m)
		bias := randVec(rng, sh.m)
		wg := NewWinograd3x3(wt, sh.c, sh.m)
		for _, tc := range conv3x3Cases(src, wt, bias, sh.n, sh.h, sh.w, sh.c, sh.m) {
			for _, f := range []*winoForm{&wg.f2, &wg.f4} {
				tol := 2e-6
				if f.r == 4 {
					tol = 2e-5
				}
				for _, asm := range []bool{false, winoAsm} {
					for _, workers := range workerCounts {
						name := fmt.Sprintf("%+v/F%d/act%d/asm=%v/workers=%d", sh, f.r, tc.act.Kind, asm, workers)
						dst := guardedOutput(len(tc.want), 3)
						var s Scratch
						wg.forward(f, dst, src, nil, sh.n, sh.h, sh.w, tc.ep, &s, workers, asm, false)
						checkGuarded(t, name, dst, tc.want, tc.mag, tol)
					}
				}
			}
		}
	}
}

// eachVariant calls run with both algorithms, the tolerance each is held
// to (relative to the sum of the products' magnitudes), the assembly and
// Go transforms, and one and three workers.
func eachVariant(wg *Winograd3x3, run func(f *winoForm, tol float64, asm bool, workers int)) {
	for _, f := range []*winoForm{&wg.f2, &wg.f4} {
		tol := 2e-6
		if f.r == 4 {
			tol = 2e-5
		}
		for _, asm := range []bool{false, winoAsm} {
			for _, workers := range []int{1, 3} {
				run(f, tol, asm, workers)
			}
		}
	}
}

// TestWinograd3x3AddMatchesDirect checks ForwardAdd against the float64
// direct convolution plus the residual, the activation after the sum, on
// odd and even sizes, both forms, the assembly and Go transforms and
// several worker counts.
func TestWinograd3x3AddMatchesDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	type shape struct{ n, h, w, c, m int }
	shapes := []shape{
		{1, 1, 1, 8, 8}, {2, 5, 7, 3, 5}, {1, 7, 7, 16, 40}, {3, 6, 4, 8, 16},
		{2, 14, 14, 32, 64}, {1, 13, 9, 24, 8}, {1, 28, 28, 16, 16}, {5, 3, 3, 64, 128},
	}
	for _, sh := range shapes {
		src := randVec(rng, sh.n*sh.h*sh.w*sh.c)
		wt := randVec(rng, 9*sh.c*sh.m)
		bias := randVec(rng, sh.m)
		res := randVec(rng, sh.n*sh.h*sh.w*sh.m)
		wg := NewWinograd3x3(wt, sh.c, sh.m)
		for _, a := range []Act{{}, ReLU} {
			sum, mag := conv3x3Ref(src, wt, bias, Act{}, sh.n, sh.h, sh.w, sh.c, sh.m)
			for i := range sum {
				sum[i] += float64(res[i])
				mag[i] += math.Abs(float64(res[i]))
				if a.Kind == ActReLU {
					sum[i] = math.Max(sum[i], 0)
				}
			}
			eachVariant(wg, func(f *winoForm, tol float64, asm bool, workers int) {
				name := fmt.Sprintf("%+v/F%d/act%d/asm=%v/workers=%d", sh, f.r, a.Kind, asm, workers)
				dst := guardedOutput(len(sum), 3)
				var s Scratch
				wg.forward(f, dst, src, res, sh.n, sh.h, sh.w, NewEpilogue(bias, a), &s, workers, asm, false)
				checkGuarded(t, name, dst, sum, mag, tol)
			})
		}
	}
}

// TestWinograd3x3MaxPoolMatchesDirect checks ForwardMaxPool against the
// float64 direct convolution followed by a 2×2, stride-2 max pool, on odd
// and even sizes (odd ones drop the last row or column), both forms, the
// assembly and Go transforms and several worker counts.
func TestWinograd3x3MaxPoolMatchesDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	type shape struct{ n, h, w, c, m int }
	shapes := []shape{
		{1, 2, 2, 8, 8}, {2, 5, 7, 3, 5}, {1, 7, 7, 16, 40}, {3, 6, 4, 8, 16},
		{2, 14, 14, 32, 64}, {1, 13, 9, 24, 8}, {1, 28, 28, 8, 32}, {5, 3, 3, 64, 128}, {1, 9, 11, 72, 96},
	}
	for _, sh := range shapes {
		src := randVec(rng, sh.n*sh.h*sh.w*sh.c)
		wt := randVec(rng, 9*sh.c*sh.m)
		bias := randVec(rng, sh.m)
		wg := NewWinograd3x3(wt, sh.c, sh.m)
		oh, ow := sh.h/2, sh.w/2
		for _, a := range []Act{{}, ReLU} {
			full, fullMag := conv3x3Ref(src, wt, bias, a, sh.n, sh.h, sh.w, sh.c, sh.m)
			want, mag := make([]float64, sh.n*oh*ow*sh.m), make([]float64, sh.n*oh*ow*sh.m)
			for b := range sh.n {
				for py := range oh {
					for px := range ow {
						for mo := range sh.m {
							o := ((b*oh+py)*ow+px)*sh.m + mo
							want[o] = math.Inf(-1)
							for _, yx := range [4][2]int{{0, 0}, {0, 1}, {1, 0}, {1, 1}} {
								i := ((b*sh.h+2*py+yx[0])*sh.w+2*px+yx[1])*sh.m + mo
								want[o] = math.Max(want[o], full[i])
								mag[o] = math.Max(mag[o], fullMag[i])
							}
						}
					}
				}
			}
			eachVariant(wg, func(f *winoForm, tol float64, asm bool, workers int) {
				name := fmt.Sprintf("%+v/F%d/act%d/asm=%v/workers=%d", sh, f.r, a.Kind, asm, workers)
				dst := guardedOutput(len(want), 3)
				var s Scratch
				wg.forward(f, dst, src, nil, sh.n, sh.h, sh.w, NewEpilogue(bias, a), &s, workers, asm, true)
				checkGuarded(t, name, dst, want, mag, tol)
			})
		}
	}
}

// TestWinograd3x3MaxPoolRefusesOtherActivations: only activations that
// commute with the maximum may be fused before the pool.
func TestWinograd3x3MaxPoolRefusesOtherActivations(t *testing.T) {
	wg := NewWinograd3x3(make([]float32, 9*8*8), 8, 8)
	defer func() {
		if recover() == nil {
			t.Fatal("ForwardMaxPool with hard-swish did not panic")
		}
	}()
	wg.ForwardMaxPool(make([]float32, 4*4*8), make([]float32, 8*8*8), 1, 8, 8, NewEpilogue(nil, HardSwish), nil)
}

// TestWinogradTransformsAsmMatchGo compares the assembly transforms with
// the Go ones bit for bit: they do the same additions in the same order.
func TestWinogradTransformsAsmMatchGo(t *testing.T) {
	if !winoAsm {
		t.Skip("no AVX2 on this CPU")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range []int{8, 24, 64} {
		rs, ds := 7*c, 3*c
		p := randVec(rng, 4*rs)
		goOut, asmOut := make([]float32, 16*ds), make([]float32, 16*ds)
		winoInputGo(p, rs, c, c, goOut, ds)
		winoInputAVX2(&p[0], rs, c, c, &asmOut[0], ds)
		for i := range goOut {
			if goOut[i] != asmOut[i] {
				t.Fatalf("input c=%d: [%d] asm %v, Go %v", c, i, asmOut[i], goOut[i])
			}
		}
		bias := randVec(rng, c)
		for _, relu := range []bool{false, true} {
			var dg, da [4][]float32
			for k := range 4 {
				dg[k], da[k] = make([]float32, c), make([]float32, c)
			}
			winoOutputGo(goOut, ds, bias, relu, dg)
			winoOutputAVX2(&goOut[0], ds, c, &bias[0], relu, &da[0][0], &da[1][0], &da[2][0], &da[3][0])
			for k := range 4 {
				for i := range c {
					if dg[k][i] != da[k][i] {
						t.Fatalf("output c=%d relu=%v: pixel %d [%d] asm %v, Go %v", c, relu, k, i, da[k][i], dg[k][i])
					}
				}
			}
		}
	}
}

// TestWinograd4TransformsAsmMatchGo compares the F(4×4) assembly
// transforms with the Go ones; they differ only in the rounding of fused
// multiply-adds.
func TestWinograd4TransformsAsmMatchGo(t *testing.T) {
	if !winoAsm {
		t.Skip("no AVX2 on this CPU")
	}
	rng := rand.New(rand.NewPCG(15, 16))
	// The transforms cancel large terms, so the rounding is relative to
	// the largest value, not to each result.
	scale := func(v []float32) float64 {
		s := 0.0
		for _, x := range v {
			s = max(s, math.Abs(float64(x)))
		}
		return s
	}
	var tol float64
	near32 := func(a, b float32) bool { return math.Abs(float64(a-b)) <= tol }
	for _, c := range []int{8, 24, 64} {
		rs, ds := 9*c, 2*c
		p := randVec(rng, 6*rs)
		goOut, asmOut := make([]float32, 36*ds), make([]float32, 36*ds)
		tmp := make([]float32, 36*8)
		wino4InputGo(p, rs, c, c, goOut, ds)
		tol = 1e-6 * scale(goOut)
		wino4InputAVX2(&p[0], rs, c, &asmOut[0], ds, &tmp[0], c/8)
		for i := range goOut {
			if !near32(asmOut[i], goOut[i]) {
				t.Fatalf("input c=%d: [%d] asm %v, Go %v", c, i, asmOut[i], goOut[i])
			}
		}
		bias := randVec(rng, c)
		for _, relu := range []bool{false, true} {
			var dg, da [16][]float32
			var dp [16]*float32
			for k := range 16 {
				dg[k], da[k] = make([]float32, c), make([]float32, c)
				dp[k] = &da[k][0]
			}
			wino4OutputGo(goOut, ds, bias, 0, c, relu, &dg)
			tol = 1e-6 * max(scale(dg[0]), scale(dg[15])) * 10
			// Two calls, to exercise a nonzero channel offset.
			wino4OutputAVX2(&goOut[0], ds, &bias[0], relu, &dp, 0, &tmp[0], 1)
			if c > 8 {
				wino4OutputAVX2(&goOut[8], ds, &bias[8], relu, &dp, 8, &tmp[0], c/8-1)
			}
			for k := range 16 {
				for i := range c {
					if !near32(da[k][i], dg[k][i]) {
						t.Fatalf("output c=%d relu=%v: pixel %d [%d] asm %v, Go %v", c, relu, k, i, da[k][i], dg[k][i])
					}
				}
			}
		}
	}
}

func TestWinograd3x3SteadyStateDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	// A garbage collection empties the GEMM workspace pool, whose refill
	// would count here; steady state is what is measured.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	rng := rand.New(rand.NewPCG(11, 12))
	c, m, h, w := 32, 32, 28, 28
	wg := NewWinograd3x3(randVec(rng, 9*c*m), c, m)
	src, dst := randVec(rng, h*w*c), make([]float32, h*w*m)
	ep := NewEpilogue(randVec(rng, m), ReLU)
	var s Scratch
	for _, f := range []*winoForm{&wg.f2, &wg.f4} {
		wg.forward(f, dst, src, nil, 1, h, w, ep, &s, 1, winoAsm, false)
		if n := testing.AllocsPerRun(20, func() { wg.forward(f, dst, src, nil, 1, h, w, ep, &s, 1, winoAsm, false) }); n > 0 {
			t.Fatalf("F(%d×%d) allocated %v times per call", f.r, f.r, n)
		}
	}
}

// BenchmarkWinograd3x3 reports the VGG-w32 convolution shapes in
// equivalent direct-convolution GFLOP/s (2·9·C·M per output pixel).
func BenchmarkWinograd3x3(b *testing.B) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, sh := range []struct{ hw, c, m int }{{28, 32, 32}, {14, 32, 64}, {14, 64, 64}, {7, 64, 128}} {
		wg := NewWinograd3x3(randVec(rng, 9*sh.c*sh.m), sh.c, sh.m)
		ep := NewEpilogue(randVec(rng, sh.m), ReLU)
		for _, n := range []int{1, 32} {
			b.Run(fmt.Sprintf("%dx%dx%d-%d/n=%d", sh.hw, sh.hw, sh.c, sh.m, n), func(b *testing.B) {
				src, dst := randVec(rng, n*sh.hw*sh.hw*sh.c), make([]float32, n*sh.hw*sh.hw*sh.m)
				var s Scratch
				for b.Loop() {
					wg.Forward(dst, src, n, sh.hw, sh.hw, ep, &s)
				}
				flops := 2 * 9 * sh.c * sh.m * sh.hw * sh.hw * n
				b.ReportMetric(float64(flops)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestWinograd3x3Update replaces the weights of a Winograd3x3 for batch
// shapes that pick each algorithm and checks that Forward then gives
// exactly what a fresh one built from the new weights gives, within the
// tolerance of the direct convolution, and that the algorithm Update did
// not transform refuses to run on the old weights.
func TestWinograd3x3Update(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	type shape struct{ n, h, w, c, m int }
	for _, sh := range []shape{{1, 7, 9, 8, 16}, {5, 13, 11, 9, 13}, {4, 14, 14, 32, 24}} {
		wg := NewWinograd3x3(randVec(rng, 9*sh.c*sh.m), sh.c, sh.m)
		for round := range 2 {
			wt := randVec(rng, 9*sh.c*sh.m)
			src := randVec(rng, sh.n*sh.h*sh.w*sh.c)
			wg.Update(wt, sh.n, sh.h, sh.w)
			fresh := NewWinograd3x3(wt, sh.c, sh.m)
			got, want := make([]float32, sh.n*sh.h*sh.w*sh.m), make([]float32, sh.n*sh.h*sh.w*sh.m)
			var s1, s2 Scratch
			wg.Forward(got, src, sh.n, sh.h, sh.w, nil, &s1)
			fresh.Forward(want, src, sh.n, sh.h, sh.w, nil, &s2)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%+v round %d: out[%d] = %v after Update, %v fresh", sh, round, i, got[i], want[i])
				}
			}
			ref, mag := conv3x3Ref(src, wt, nil, Act{}, sh.n, sh.h, sh.w, sh.c, sh.m)
			checkGuarded(t, fmt.Sprintf("%+v round %d", sh, round), got, ref, mag, 2e-5)
			picked := wg.form(sh.n, sh.h, sh.w)
			other := &wg.f2
			if picked == &wg.f2 {
				other = &wg.f4
			}
			func() {
				defer func() {
					if recover() == nil {
						t.Fatalf("%+v: the algorithm Update skipped ran on the old weights", sh)
					}
				}()
				wg.forward(other, got, src, nil, sh.n, sh.h, sh.w, nil, &s1, 1, winoAsm, false)
			}()
		}
	}
}
