package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestBatchNormSumsMatchReference compares the parallel, blocked sums and
// row kernels of batch norm with float64 loops on odd sizes.
func TestBatchNormSumsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, c := range []int{1, 3, 8, 24} {
		for _, rows := range []int{1, 7, 257, 9001} {
			t.Run(fmt.Sprintf("c%d_rows%d", c, rows), func(t *testing.T) {
				x, dy := randVec(rng, rows*c), randVec(rng, rows*c)
				scale, shift := randVec(rng, c), randVec(rng, c)
				s1, s2 := make([]float64, c), make([]float64, c)
				ChannelMoments(s1, s2, x, c)
				for _, masked := range []bool{false, true} {
					var sc, sh []float32
					if masked {
						sc, sh = scale, shift
					}
					sd, sdx := make([]float64, c), make([]float64, c)
					GradMoments(sd, sdx, dy, x, c, sc, sh)
					w1, w2, wd, wdx := make([]float64, c), make([]float64, c), make([]float64, c), make([]float64, c)
					for i, v := range x {
						ch := i % c
						w1[ch] += float64(v)
						w2[ch] += float64(v) * float64(v)
						g := float64(dy[i])
						if masked && !(v*scale[ch]+shift[ch] > 0) {
							g = 0
						}
						wd[ch] += g
						wdx[ch] += g * float64(v)
					}
					for ch := range c {
						for _, p := range [][2]float64{{s1[ch], w1[ch]}, {s2[ch], w2[ch]}, {sd[ch], wd[ch]}, {sdx[ch], wdx[ch]}} {
							if !near(p[0], p[1], 1e-4) {
								t.Fatalf("masked=%v channel %d: sum %v, want %v", masked, ch, p[0], p[1])
							}
						}
					}
				}
				y := make([]float32, len(x))
				AffineParallel(y, x, c, scale, shift, true)
				dx := make([]float32, len(x))
				GradApplyParallel(dx, dy, x, c, nil, nil, scale, shift, scale)
				for i, v := range x {
					ch := i % c
					if want := max(v*scale[ch]+shift[ch], 0); !near(float64(y[i]), float64(want), 1e-5) {
						t.Fatalf("affine [%d] = %v, want %v", i, y[i], want)
					}
					if want := scale[ch]*dy[i] + shift[ch]*v + scale[ch]; !near(float64(dx[i]), float64(want), 1e-5) {
						t.Fatalf("gradApply [%d] = %v, want %v", i, dx[i], want)
					}
				}
			})
		}
	}
}
