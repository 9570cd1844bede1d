package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestVectorKernelsMatchGo compares the dispatched batch-norm kernels
// (assembly where the CPU and channel count allow) with the pure-Go
// definitions on random data of odd row counts.
func TestVectorKernelsMatchGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	close := func(name string, got, want []float32) {
		t.Helper()
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*math.Max(1, math.Abs(float64(want[i]))) {
				t.Fatalf("%s[%d] = %v, want %v", name, i, got[i], want[i])
			}
		}
	}
	for _, c := range []int{8, 16, 24, 32, 64, 128, 3, 12} {
		for _, rows := range []int{1, 2, 3, 17, 255} {
			n := rows * c
			x, dy := vec(n), vec(n)
			scale, shift, ka, kb, kc := vec(c), vec(c), vec(c), vec(c), vec(c)

			s1, s2, w1, w2 := vec(c), vec(c), make([]float32, c), make([]float32, c)
			copy(w1, s1)
			copy(w2, s2)
			ChannelSums(x, c, s1, s2)
			channelSumsGo(x, c, w1, w2)
			close("channelSums s1", s1, w1)
			close("channelSums s2", s2, w2)

			for _, relu := range []bool{false, true} {
				got, want := make([]float32, n), make([]float32, n)
				Affine(got, x, c, scale, shift, relu)
				affineGo(want, x, c, scale, shift, relu)
				close("affine", got, want)
				// Add is exact: the same single rounding either way.
				Add(got, x, dy, relu)
				for i := range want {
					want[i] = x[i] + dy[i]
					if relu {
						want[i] = max(want[i], 0)
					}
				}
				close("add", got, want)
				inPlace := append([]float32(nil), x...)
				Add(inPlace, inPlace, dy, relu)
				close("add in place", inPlace, want)
			}
			{
				got, want := append([]float32(nil), dy...), append([]float32(nil), dy...)
				mulAdd(got, x, dy)
				mulAddGo(want, x, dy)
				close("mulAdd", got, want)
				x := append([]float32(nil), x...)
				for i := range x { // beyond the kinks at ±3 too
					x[i] *= 4
				}
				hardSwish(got, x)
				hardSwishGo(want, x)
				for i := range want { // the same roundings: exact
					if got[i] != want[i] {
						t.Fatalf("hardSwish(%v) = %v, want %v", x[i], got[i], want[i])
					}
				}
				reluGrad(got, dy, x)
				reluGradGo(want, dy, x)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("reluGrad(%v, %v) = %v, want %v", dy[i], x[i], got[i], want[i])
					}
				}
				hardSwishGrad(got, dy, x)
				hardSwishGradGo(want, dy, x)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("hardSwishGrad(%v, %v) = %v, want %v", dy[i], x[i], got[i], want[i])
					}
				}
			}
			for _, mask := range [][2][]float32{{nil, nil}, {scale, shift}} {
				sd, sdx, wd, wdx := make([]float32, c), make([]float32, c), make([]float32, c), make([]float32, c)
				GradSums(dy, x, c, mask[0], mask[1], sd, sdx)
				gradSumsGo(dy, x, c, mask[0], mask[1], wd, wdx)
				close("gradSums sd", sd, wd)
				close("gradSums sdx", sdx, wdx)
				got, want := make([]float32, n), make([]float32, n)
				GradApply(got, dy, x, c, mask[0], mask[1], ka, kb, kc)
				gradApplyGo(want, dy, x, c, mask[0], mask[1], ka, kb, kc)
				close("gradApply", got, want)
			}
		}
	}
}

func TestPool2x2RowMatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, c := range []int{8, 16, 32, 5} {
		for _, ow := range []int{1, 3, 14} {
			top, bot := make([]float32, 2*ow*c), make([]float32, 2*ow*c)
			for i := range top {
				// Few distinct values, so ties are common.
				top[i], bot[i] = float32(rng.IntN(4)), float32(rng.IntN(4))
			}
			for _, withArg := range []bool{false, true} {
				got, want := make([]float32, ow*c), make([]float32, ow*c)
				var garg, warg []int32
				if withArg {
					garg, warg = make([]int32, ow*c), make([]int32, ow*c)
				}
				MaxPool2x2Row(got, garg, top, bot, ow, c, 1000, 5000)
				pool2x2RowGo(want, warg, top, bot, ow, c, 1000, 5000)
				for i := range want {
					if got[i] != want[i] || (withArg && garg[i] != warg[i]) {
						t.Fatalf("c=%d ow=%d: output %d = %v (arg %v), want %v (arg %v)", c, ow, i, got[i], garg, want[i], warg)
					}
				}
			}
		}
	}
}

// TestMaxU8MatchesGo compares MaxU8 (AVX2 where the CPU has it) with the
// Go loop on lengths around the vector width, and checks that nothing
// past dst changes.
func TestMaxU8MatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, n := range []int{1, 7, 31, 32, 33, 64, 100, 128, 257} {
		dst, src := make([]uint8, n+1), make([]uint8, n)
		for i := range dst {
			dst[i] = uint8(rng.IntN(256))
		}
		for i := range src {
			src[i] = uint8(rng.IntN(256))
		}
		want := slices.Clone(dst)
		maxU8Go(want[:n], src)
		MaxU8(dst[:n], src)
		if !slices.Equal(dst, want) {
			t.Fatalf("n=%d: MaxU8 = %v, want %v", n, dst, want)
		}
	}
}

// TestU8RowKernelsMatchGo compares the vector kernels of the int8 path
// that this machine runs (copyRunsU8, maxPool2x2U8Row) with their Go
// definitions, which run where the vector ones do not, byte for byte on
// the sizes each takes.
func TestU8RowKernelsMatchGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	bytes := func(n int) []uint8 {
		b := make([]uint8, n)
		for i := range b {
			b[i] = uint8(rng.IntN(256))
		}
		return b
	}
	for _, run := range []int{16, 32, 48, 96, 192} {
		for _, kh := range []int{1, 3} {
			n, step, rowStep := 1+rng.IntN(9), run/3+rng.IntN(40), run+rng.IntN(100)
			src := bytes((n-1)*step + (kh-1)*rowStep + run)
			got, want := make([]uint8, n*kh*run+1), make([]uint8, n*kh*run+1)
			copyRunsU8(got[:n*kh*run], src, n, step, kh, rowStep, run)
			copyRunsGo(want[:n*kh*run], src, n, step, kh, rowStep, run)
			if !slices.Equal(got, want) {
				t.Errorf("copyRunsU8 run=%d kh=%d n=%d differs from copyRunsGo", run, kh, n)
			}
		}
	}
	for _, c := range []int{3, 32, 64, 96} {
		ow := 1 + rng.IntN(14)
		top, bottom := bytes(2*ow*c), bytes(2*ow*c)
		got, want := make([]uint8, ow*c), make([]uint8, ow*c)
		maxPool2x2U8Row(got, top, bottom, ow, c)
		maxPool2x2Go(want, top, bottom, ow, c)
		if !slices.Equal(got, want) {
			t.Errorf("maxPool2x2U8Row c=%d ow=%d differs from maxPool2x2Go", c, ow)
		}
	}
}
