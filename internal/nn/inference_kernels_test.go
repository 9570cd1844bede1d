package nn

import (
	"math/rand/v2"
	"testing"
)

func TestAffineRowsMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []int{1, 8, 12, 32, 64} {
		for _, relu := range []bool{false, true} {
			rows := 37
			src := make([]float32, rows*c)
			scale, shift := make([]float32, c), make([]float32, c)
			for i := range src {
				src[i] = float32(rng.NormFloat64())
			}
			for i := range scale {
				scale[i], shift[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			}
			got := make([]float32, len(src))
			AffineRows(got, src, scale, shift, relu)
			inPlace := append([]float32(nil), src...)
			AffineRows(inPlace, inPlace, scale, shift, relu)
			for i, v := range src {
				want := v*scale[i%c] + shift[i%c]
				if relu {
					want = max(want, 0)
				}
				if d := got[i] - want; d > 1e-6 || d < -1e-6 || inPlace[i] != got[i] {
					t.Fatalf("c=%d relu=%v: value %d = %v (in place %v), want %v", c, relu, i, got[i], inPlace[i], want)
				}
			}
		}
	}
}

func TestMaxPool2x2RowMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range []int{1, 8, 16, 24} {
		ow := 7
		top, bot := make([]float32, 2*ow*c), make([]float32, 2*ow*c)
		for i := range top {
			top[i], bot[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		got := make([]float32, ow*c)
		MaxPool2x2Row(got, top, bot, ow, c)
		for x := range ow {
			for ch := range c {
				l, r := (2*x)*c+ch, (2*x+1)*c+ch
				want := max(top[l], top[r], bot[l], bot[r])
				if got[x*c+ch] != want {
					t.Fatalf("c=%d: output (%d, %d) = %v, want %v", c, x, ch, got[x*c+ch], want)
				}
			}
		}
	}
}
