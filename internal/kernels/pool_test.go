package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// poolRef is the direct max or average pool.
func poolRef(x []float32, n int, s PoolShape, isMax, includePad bool) ([]float32, []int32) {
	y, arg := make([]float32, n*s.OH*s.OW*s.C), make([]int32, n*s.OH*s.OW*s.C)
	for b := range n {
		for oy := range s.OH {
			for ox := range s.OW {
				for ch := range s.C {
					best, at, sum, count := math.Inf(-1), int32(-1), 0.0, 0
					for ky := range s.KH {
						for kx := range s.KW {
							iy, ix := oy*s.SH-s.PT+ky*s.DH, ox*s.SW-s.PL+kx*s.DW
							if iy < 0 || iy >= s.H || ix < 0 || ix >= s.W {
								continue
							}
							i := ((b*s.H+iy)*s.W+ix)*s.C + ch
							if v := float64(x[i]); v > best {
								best, at = v, int32(i)
							}
							sum += float64(x[i])
							count++
						}
					}
					o := ((b*s.OH+oy)*s.OW+ox)*s.C + ch
					if isMax {
						y[o], arg[o] = float32(best), at
						continue
					}
					if includePad {
						y0, x0 := oy*s.SH-s.PT, ox*s.SW-s.PL
						count = (min(y0+s.KH, s.H+s.PB) - max(y0, -s.PT)) * (min(x0+s.KW, s.W+s.PR) - max(x0, -s.PL))
					}
					if count > 0 {
						y[o] = float32(sum / float64(count))
					}
				}
			}
		}
	}
	return y, arg
}

func TestPoolsMatchReference(t *testing.T) {
	padded := PoolShape{C: 5, H: 7, W: 6, OH: 4, OW: 3, KH: 3, KW: 3, SH: 2, SW: 2, DH: 1, DW: 1, PT: 1, PL: 1, PB: 1, PR: 0}
	dilated := PoolShape{C: 3, H: 9, W: 8, OH: 3, OW: 4, KH: 2, KW: 2, SH: 3, SW: 2, DH: 2, DW: 1}
	for _, s := range []PoolShape{SquarePool(8, 6, 6, 2, 2), SquarePool(3, 7, 5, 2, 2), SquarePool(16, 9, 9, 3, 2), SquarePool(5, 5, 7, 3, 1), padded, dilated} {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("%+v/n%d", s, n), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(s.C), uint64(n)))
				x := randVec(rng, n*s.H*s.W*s.C)
				for i := range x {
					x[i] = float32(math.Round(float64(x[i]))) // ties
				}
				want, wantArg := poolRef(x, n, s, true, false)
				y, arg := make([]float32, len(want)), make([]int32, len(want))
				MaxPool(y, arg, x, n, s)
				assertClose(t, "max", y, want, 0)
				for i := range arg {
					if arg[i] != wantArg[i] {
						t.Fatalf("arg[%d] = %d, want %d", i, arg[i], wantArg[i])
					}
				}
				MaxPool(y, nil, x, n, s)
				assertClose(t, "max without arg", y, want, 0)
				dy := randVec(rng, len(y))
				dx := make([]float32, len(x))
				MaxPoolBackward(dx, dy, arg, n, s.H*s.W*s.C, s.OH*s.OW*s.C, s.Overlapping())
				wantDX := make([]float32, len(x))
				for i, a := range wantArg {
					if a >= 0 {
						wantDX[a] += dy[i]
					}
				}
				assertClose(t, "max backward", dx, wantDX, 1e-6)
				if s.DH > 1 || s.DW > 1 {
					return
				}
				for _, inc := range []bool{false, true} {
					want, _ := poolRef(x, n, s, false, inc)
					AvgPool(y, x, n, s, inc)
					assertClose(t, fmt.Sprintf("average (includePad %v)", inc), y, want, 1e-5)
				}
			})
		}
	}
}

func TestGlobalPoolScaleAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, tc := range []struct{ n, hw, c int }{{1, 1, 3}, {3, 49, 5}, {70, 9, 17}} {
		x, g := randVec(rng, tc.n*tc.hw*tc.c), randVec(rng, tc.n*tc.c)
		y := make([]float32, tc.n*tc.c)
		GlobalAvgPool(y, x, tc.n, tc.hw, tc.c)
		dx := make([]float32, len(x))
		GlobalAvgPoolBackward(dx, g, tc.n, tc.hw, tc.c)
		scaled, sum := make([]float32, len(x)), make([]float32, len(x))
		ScaleChannels(scaled, x, g, tc.n, tc.hw, tc.c)
		AddParallel(sum, x, scaled, false)
		// The gradient of ScaleChannels for an output gradient of x itself:
		// dx = x·g, dg = Σ x².
		sdx, sdg := make([]float32, len(x)), randVec(rng, len(g))
		ScaleChannelsBackward(sdx, sdg, x, x, g, tc.n, tc.hw, tc.c)
		for b := range tc.n {
			for ch := range tc.c {
				var s, sq float64
				for p := range tc.hw {
					i := (b*tc.hw+p)*tc.c + ch
					s += float64(x[i])
					gv := g[b*tc.c+ch]
					if !near(float64(dx[i]), float64(gv)/float64(tc.hw), 1e-6) || scaled[i] != x[i]*gv || sum[i] != x[i]+scaled[i] || sdx[i] != scaled[i] {
						t.Fatalf("%+v: value %d: dx %v, scaled %v, sum %v, scale gradient %v", tc, i, dx[i], scaled[i], sum[i], sdx[i])
					}
					sq += float64(x[i]) * float64(x[i])
				}
				if got := sdg[b*tc.c+ch]; !near(float64(got), sq, 1e-5) {
					t.Fatalf("%+v: gate gradient [%d,%d] = %v, want %v", tc, b, ch, got, sq)
				}
				if got := y[b*tc.c+ch]; !near(float64(got), s/float64(tc.hw), 1e-5) {
					t.Fatalf("%+v: mean [%d,%d] = %v, want %v", tc, b, ch, got, s/float64(tc.hw))
				}
			}
		}
	}
}

// TestMaxPoolU8MatchesReference compares the max pool over codes (its 2×2
// vector rows and its general windows) with the float pool's reference,
// on channel counts the vector rows take (32, 64) and others, odd sizes
// whose last row or column no window reads, strides and dilations.
func TestMaxPoolU8MatchesReference(t *testing.T) {
	dilated := PoolShape{C: 32, H: 9, W: 8, OH: 3, OW: 4, KH: 2, KW: 2, SH: 3, SW: 2, DH: 2, DW: 1}
	for _, s := range []PoolShape{SquarePool(32, 28, 28, 2, 2), SquarePool(64, 7, 9, 2, 2), SquarePool(3, 7, 5, 2, 2),
		SquarePool(32, 9, 9, 3, 2), SquarePool(96, 5, 5, 2, 1), dilated} {
		const n = 3
		rng := rand.New(rand.NewPCG(uint64(s.C), uint64(s.H)))
		x := make([]uint8, n*s.H*s.W*s.C)
		xf := make([]float32, len(x))
		for i := range x {
			x[i] = uint8(rng.IntN(256))
			xf[i] = float32(x[i])
		}
		want, _ := poolRef(xf, n, s, true, false)
		y := make([]uint8, len(want))
		MaxPoolU8(y, x, n, s)
		for i := range y {
			if float32(y[i]) != want[i] {
				t.Fatalf("%+v: y[%d] = %d, want %v", s, i, y[i], want[i])
			}
		}
	}
}
