package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/blas"
)

// convRef is the direct convolution, the definition Conv.Forward is
// checked against; w has the layout ConvShape documents.
func convRef(x []float32, n int, s ConvShape, w, bias []float32, a Act) []float32 {
	cg, mg := s.C/s.Groups, s.M/s.Groups
	y := make([]float32, n*s.OH*s.OW*s.M)
	for b := range n {
		for oy := range s.OH {
			for ox := range s.OW {
				for m := range s.M {
					g := m / mg
					var sum float64
					for ky := range s.KH {
						for kx := range s.KW {
							iy, ix := oy*s.SH-s.PT+ky*s.DH, ox*s.SW-s.PL+kx*s.DW
							if iy < 0 || iy >= s.H || ix < 0 || ix >= s.W {
								continue
							}
							for ci := range cg {
								var wv float32
								if s.Depthwise() {
									wv = w[(ky*s.KW+kx)*s.C+m]
								} else {
									wv = w[g*s.KH*s.KW*cg*mg+((ky*s.KW+kx)*cg+ci)*mg+m%mg]
								}
								sum += float64(x[((b*s.H+iy)*s.W+ix)*s.C+g*cg+ci]) * float64(wv)
							}
						}
					}
					if bias != nil {
						sum += float64(bias[m])
					}
					y[((b*s.OH+oy)*s.OW+ox)*s.M+m] = a.Eval(float32(sum))
				}
			}
		}
	}
	return y
}

// convGradRef is the direct weight and input gradient of a convolution
// without activation.
func convGradRef(x, dy []float32, n int, s ConvShape, w []float32) (dw, dx []float32) {
	cg, mg := s.C/s.Groups, s.M/s.Groups
	gw, gx := make([]float64, len(w)), make([]float64, len(x))
	for b := range n {
		for oy := range s.OH {
			for ox := range s.OW {
				for m := range s.M {
					g := m / mg
					d := dy[((b*s.OH+oy)*s.OW+ox)*s.M+m]
					for ky := range s.KH {
						for kx := range s.KW {
							iy, ix := oy*s.SH-s.PT+ky*s.DH, ox*s.SW-s.PL+kx*s.DW
							if iy < 0 || iy >= s.H || ix < 0 || ix >= s.W {
								continue
							}
							for ci := range cg {
								wi := g*s.KH*s.KW*cg*mg + ((ky*s.KW+kx)*cg+ci)*mg + m%mg
								if s.Depthwise() {
									wi = (ky*s.KW+kx)*s.C + m
								}
								xi := ((b*s.H+iy)*s.W+ix)*s.C + g*cg + ci
								gw[wi] += float64(d) * float64(x[xi])
								gx[xi] += float64(d) * float64(w[wi])
							}
						}
					}
				}
			}
		}
	}
	dw, dx = make([]float32, len(w)), make([]float32, len(x))
	for i, v := range gw {
		dw[i] = float32(v)
	}
	for i, v := range gx {
		dx[i] = float32(v)
	}
	return dw, dx
}

// gradTol is the tolerance of gradients against the float64 reference.
// Inputs have a standard deviation of 3, so a weight gradient sums
// hundreds of float32 products of magnitude ~9 that largely cancel; the
// order of that sum (split between workers as they come) moves the result
// by up to ~1e-4 of its size, while a wrong index moves it by O(1).
const gradTol = 1e-3

func assertClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if !near(float64(got[i]), float64(want[i]), tol) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// oddShapes are convolution shapes of odd sizes covering every path:
// same convolutions (padded layout and im2col), strided, dilated,
// asymmetric padding, grouped, depthwise, pointwise, one channel.
func oddShapes() []ConvShape {
	sq := SquareConv
	general := ConvShape{C: 4, H: 9, W: 7, M: 6, KH: 3, KW: 2, SH: 2, SW: 1, DH: 2, DW: 1, PT: 2, PL: 0, Groups: 2}
	general.OH = (general.H+2*general.PT-(general.KH-1)*general.DH-1)/general.SH + 1
	general.OW = (general.W+general.PL-(general.KW-1)*general.DW-1)/general.SW + 1
	dw := sq(5, 7, 9, 5, 3, 2, 1)
	dw.Groups = 5
	dwSame := sq(9, 6, 5, 9, 5, 1, 2)
	dwSame.Groups = 9
	return []ConvShape{
		sq(3, 7, 9, 5, 3, 1, 1), sq(9, 11, 5, 7, 3, 1, 1), sq(8, 6, 6, 16, 3, 1, 1), sq(4, 9, 8, 3, 5, 1, 2),
		sq(3, 1, 1, 2, 3, 1, 1), sq(2, 13, 13, 33, 3, 1, 1), sq(2, 9, 7, 3, 3, 2, 1), sq(1, 5, 7, 4, 3, 1, 1),
		sq(7, 5, 3, 11, 1, 1, 0), general, dw, dwSame,
	}
}

func TestConvMatchesReference(t *testing.T) {
	for _, s := range oddShapes() {
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		for _, path := range []ConvPath{ConvAuto, ConvIm2col, ConvPadded} {
			for _, chunk := range []int{0, 1, 2} {
				for _, n := range []int{1, 5} {
					t.Run(fmt.Sprintf("%+v/path%d/chunk%d/n%d", s, path, chunk, n), func(t *testing.T) {
						rng := rand.New(rand.NewPCG(uint64(s.C*s.H), uint64(n)))
						x, w := randVec(rng, n*s.H*s.W*s.C), randVec(rng, s.WeightLen())
						bias := randVec(rng, s.M)
						c := Conv{ConvShape: s, Path: path, MaxChunk: chunk}
						var sc Scratch
						for _, a := range []Act{{}, ReLU, HardSwish} {
							y := make([]float32, n*s.OH*s.OW*s.M)
							c.Forward(y, x, n, w, NewEpilogue(bias, a), &sc)
							assertClose(t, "output", y, convRef(x, n, s, w, bias, a), 1e-4)
						}
						if s.Groups > 1 && !s.Depthwise() || s.DH > 1 {
							return // no backward pass for these
						}
						dy := randVec(rng, n*s.OH*s.OW*s.M)
						wantDW, wantDX := convGradRef(x, dy, n, s, w)
						for range 2 { // a second pass must not accumulate
							dw, dx := make([]float32, len(w)), make([]float32, len(x))
							c.Backward(dx, dw, x, dy, n, w, &sc)
							assertClose(t, "weight gradient", dw, wantDW, gradTol)
							assertClose(t, "input gradient", dx, wantDX, gradTol)
							c.Backward(nil, dw, x, dy, n, w, &sc)
							assertClose(t, "weight gradient without input gradient", dw, wantDW, gradTol)
						}
					})
				}
			}
		}
	}
}

// TestConvBatchSplitBetweenWorkers runs batches large enough to be shared
// between workers (the padded layout and per-worker partial sums).
func TestConvBatchSplitBetweenWorkers(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	dw := SquareConv(6, 5, 5, 6, 3, 1, 1)
	dw.Groups = 6
	for _, s := range []ConvShape{SquareConv(8, 11, 10, 5, 3, 1, 1), SquareConv(3, 7, 5, 4, 3, 2, 1), dw} {
		n := 13
		rng := rand.New(rand.NewPCG(7, uint64(s.C)))
		x, w, dy := randVec(rng, n*s.H*s.W*s.C), randVec(rng, s.WeightLen()), randVec(rng, n*s.OH*s.OW*s.M)
		c := Conv{ConvShape: s, MaxChunk: 1}
		var sc Scratch
		y := make([]float32, n*s.OH*s.OW*s.M)
		c.Forward(y, x, n, w, nil, &sc)
		assertClose(t, fmt.Sprintf("%+v output", s), y, convRef(x, n, s, w, nil, Act{}), 1e-4)
		wantDW, wantDX := convGradRef(x, dy, n, s, w)
		gw, gx := make([]float32, len(w)), make([]float32, len(x))
		c.Backward(gx, gw, x, dy, n, w, &sc)
		assertClose(t, fmt.Sprintf("%+v weight gradient", s), gw, wantDW, gradTol)
		assertClose(t, fmt.Sprintf("%+v input gradient", s), gx, wantDX, gradTol)
	}
}

// TestDepthwiseBackwardManyProcs is the regression test for a deadlock:
// the depthwise backward pass sent one partial sum per worker into a
// 64-slot channel it drained only after all workers had finished, so
// with more than 64 workers (GOMAXPROCS=128, batch 128) it never returned.
func TestDepthwiseBackwardManyProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(128))
	s := SquareConv(8, 6, 6, 8, 3, 1, 1)
	s.Groups = 8
	n := 128
	rng := rand.New(rand.NewPCG(9, 10))
	x, w, dy := randVec(rng, n*s.H*s.W*s.C), randVec(rng, s.WeightLen()), randVec(rng, n*s.OH*s.OW*s.M)
	done := make(chan struct{})
	dw, dx := make([]float32, len(w)), make([]float32, len(x))
	go func() {
		defer close(done)
		DepthwiseBackward(dx, dw, x, dy, n, s, w, new(Scratch))
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("DepthwiseBackward at GOMAXPROCS=128 with a batch of 128 did not return")
	}
	wantDW, wantDX := convGradRef(x, dy, n, s, w)
	assertClose(t, "weight gradient", dw, wantDW, gradTol)
	assertClose(t, "input gradient", dx, wantDX, gradTol)
}

// TestPadLayoutRoundTrip checks that unpad(pad(x)) = x and that padding
// is zero, on odd sizes and padding widths.
func TestPadLayoutRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ n, h, w, p, ch int }{{1, 1, 1, 1, 1}, {3, 5, 7, 1, 3}, {2, 4, 3, 2, 5}} {
		l := newPadLayout(tc.h, tc.w, tc.p)
		x := randVec(rng, tc.n*tc.h*tc.w*tc.ch)
		for i := range x {
			x[i] = float32(math.Abs(float64(x[i]))) + 10 // never zero, so zeros in the padded copy are padding
		}
		dst := make([]float32, l.pixels(tc.n)*tc.ch)
		for i := range dst {
			dst[i] = float32(math.NaN())
		}
		l.pad(dst, x, tc.n, tc.ch)
		zeros := 0
		for i, v := range dst {
			if v != v {
				t.Fatalf("%+v: padded value %d not written", tc, i)
			}
			if v == 0 {
				zeros++
			}
		}
		if want := len(dst) - len(x); zeros != want {
			t.Errorf("%+v: %d zeros, want %d", tc, zeros, want)
		}
		back := make([]float32, len(x))
		l.unpad(back, dst[l.first()*tc.ch:], tc.n, tc.ch)
		assertClose(t, fmt.Sprintf("%+v round trip", tc), back, x, 0)
	}
}

// TestIm2col3x3SingleMatchesGeneral compares the first layer's im2col
// with the general one on odd image sizes.
func TestIm2col3x3SingleMatchesGeneral(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, hw := range [][2]int{{1, 1}, {2, 3}, {5, 7}, {28, 28}, {9, 70}} {
		s := SquareConv(1, hw[0], hw[1], 4, 3, 1, 1)
		x := randVec(rng, 3*hw[0]*hw[1])
		got := make([]float32, 2*hw[0]*hw[1]*9)
		Im2col(got, x, 1, 3, 0, 1, s, false)
		want := make([]float32, len(got))
		for i := range want {
			want[i] = float32(math.NaN()) // every value must be written
		}
		im2colRows(want, x, 1, 0, 2*s.OH, 0, 1, s)
		assertClose(t, fmt.Sprintf("%dx%d", hw[0], hw[1]), got, want, 0)
	}
}

// TestIm2colU8MatchesReference compares Im2colU8 (its copies of whole
// kernel rows and its vector runs) with the definition, one code at a
// time, on shapes with odd sizes, strides, asymmetric padding, dilation
// and the channel counts the vector runs take (16, 32, 64) and others, over
// every split of the output rows.
func TestIm2colU8MatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	shapes := append(oddShapes(),
		SquareConv(32, 28, 28, 32, 3, 1, 1), SquareConv(64, 7, 9, 8, 3, 1, 1), SquareConv(16, 9, 8, 4, 3, 1, 1), SquareConv(16, 9, 9, 4, 1, 2, 0), SquareConv(32, 9, 11, 5, 3, 2, 1),
		SquareConv(32, 5, 5, 4, 5, 1, 0), SquareConv(3, 2, 2, 4, 3, 1, 1), SquareConv(32, 3, 3, 4, 3, 1, 2),
		ConvShape{C: 32, H: 6, W: 7, M: 3, OH: 5, OW: 5, KH: 3, KW: 2, SH: 1, SW: 1, DH: 2, DW: 1, PT: 1, PL: 0, Groups: 1},
		ConvShape{C: 64, H: 8, W: 5, M: 3, OH: 4, OW: 5, KH: 2, KW: 3, SH: 2, SW: 1, DH: 1, DW: 1, PT: 0, PL: 1, Groups: 1},
		ConvShape{C: 32, H: 4, W: 6, M: 3, OH: 4, OW: 2, KH: 3, KW: 3, SH: 1, SW: 1, DH: 1, DW: 2, PT: 1, PL: 1, Groups: 1},
	)
	for _, s := range shapes {
		if s.Groups == 1 {
			checkIm2colU8(t, rng, s)
		}
	}
}

// FuzzIm2colU8 runs checkIm2colU8 on shapes the fuzzer picks: channels
// 1–40 (the vector runs and the Go copies), maps up to 12×12, kernels up
// to 4×4 with strides, dilations and asymmetric padding, outputs that
// leave the last rows and columns unread or overhang the border.
func FuzzIm2colU8(f *testing.F) {
	f.Add(uint64(1), uint8(31), uint8(27), uint8(2), uint8(0))
	f.Add(uint64(2), uint8(15), uint8(0x55), uint8(0x93), uint8(7))
	f.Fuzz(func(t *testing.T, seed uint64, c, hw, k, extra uint8) {
		s := ConvShape{C: 1 + int(c)%40, H: 1 + int(hw)%12, W: 1 + int(hw/16)%12, M: 1,
			KH: 1 + int(k)%4, KW: 1 + int(k/4)%4, SH: 1 + int(k/16)%3, SW: 1 + int(extra)%3,
			DH: 1 + int(k/64)%2, DW: 1 + int(extra/4)%2, PT: int(extra/8) % 3, PL: int(extra/32) % 3, Groups: 1}
		// Outputs as far as the kernel fits with up to two more rows and
		// columns of padding at the bottom and right.
		s.OH = (s.H+s.PT+int(extra/128)-(s.KH-1)*s.DH-1)/s.SH + 1
		s.OW = (s.W+s.PL+int(extra/64%2)-(s.KW-1)*s.DW-1)/s.SW + 1
		if s.OH < 1 || s.OW < 1 {
			return
		}
		checkIm2colU8(t, rand.New(rand.NewPCG(seed, 3)), s)
	})
}

// checkIm2colU8 compares PadU8 then Im2colU8 with the definition of the
// unfolding of s (padding included), one code at a time, on three random
// images, over every split of the output rows; and checks that Im2colU8
// refuses s itself when it overhangs its input.
func checkIm2colU8(t *testing.T, rng *rand.Rand, s ConvShape) {
	t.Helper()
	const n = 3
	x := make([]uint8, n*s.H*s.W*s.C)
	for i := range x {
		x[i] = uint8(rng.IntN(256))
	}
	z := uint8(rng.IntN(256))
	kdim := s.KH * s.KW * s.C
	want := make([]uint8, n*s.OH*s.OW*kdim)
	for b := range n {
		for oy := range s.OH {
			for ox := range s.OW {
				for ky := range s.KH {
					for kx := range s.KW {
						iy, ix := oy*s.SH-s.PT+ky*s.DH, ox*s.SW-s.PL+kx*s.DW
						for c := range s.C {
							v := z
							if iy >= 0 && iy < s.H && ix >= 0 && ix < s.W {
								v = x[((b*s.H+iy)*s.W+ix)*s.C+c]
							}
							want[(((b*s.OH+oy)*s.OW+ox)*s.KH*s.KW+ky*s.KW+kx)*s.C+c] = v
						}
					}
				}
			}
		}
	}
	u := s.Unpadded()
	xp := make([]uint8, n*u.H*u.W*u.C)
	for b := range n {
		PadU8(xp[b*u.H*u.W*u.C:(b+1)*u.H*u.W*u.C], x[b*s.H*s.W*s.C:(b+1)*s.H*s.W*s.C], z, s)
	}
	for _, split := range []int{1, 2, s.OH + 1} {
		got := make([]uint8, len(want))
		for lo := 0; lo < n*s.OH; lo += split {
			Im2colU8(got, xp, 0, lo, min(lo+split, n*s.OH), u)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%+v padded to %dx%d, rows split by %d: col[%d] = %d, want %d", s, u.H, u.W, split, i, got[i], want[i])
			}
		}
	}
	if u.H > s.H || u.W > s.W || s.PT > 0 || s.PL > 0 {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%+v: Im2colU8 accepted a shape that overhangs its input", s)
				}
			}()
			Im2colU8(make([]uint8, len(want)), x, 0, 0, n*s.OH, s)
		}()
	}
}

// TestPadQuantizeU8IsPadOfQuantized: padding float32 values while
// quantizing them gives the padded map of their codes.
func TestPadQuantizeU8IsPadOfQuantized(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, s := range []ConvShape{SquareConv(32, 28, 28, 32, 3, 1, 1), SquareConv(5, 7, 6, 3, 3, 2, 1), SquareConv(3, 4, 5, 2, 5, 1, 2)} {
		x := randVec(rng, s.H*s.W*s.C)
		inv, z := float32(40), uint8(rng.IntN(256))
		q := make([]uint8, len(x))
		blas.QuantizeU8s(q, x, inv, z)
		u := s.Unpadded()
		want, got := make([]uint8, u.H*u.W*u.C), make([]uint8, u.H*u.W*u.C)
		PadU8(want, q, z, s)
		PadQuantizeU8(got, x, inv, z, s)
		if !slices.Equal(got, want) {
			t.Errorf("%+v: PadQuantizeU8 differs from PadU8 of the codes", s)
		}
	}
}
