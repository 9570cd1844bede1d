package blas

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// int8Case is a random int8 product with strides wider than the matrices.
type int8Case struct {
	m, k, n int
	a       []uint8
	lda     int
	za      uint8
	b       []int8
	ldb     int
}

func newInt8Case(rng *rand.Rand, m, k, n int) int8Case {
	c := int8Case{m: m, k: k, n: n, lda: k + rng.IntN(3), ldb: n + rng.IntN(3), za: uint8(rng.IntN(256))}
	c.a = make([]uint8, max(m, 1)*c.lda)
	for i := range c.a {
		c.a[i] = uint8(rng.IntN(256))
	}
	c.b = make([]int8, k*c.ldb)
	for i := range c.b {
		c.b[i] = int8(rng.IntN(255) - 127) // symmetric weights: −127 … 127
	}
	return c
}

func (c int8Case) ref() []int32 {
	out := make([]int32, c.m*c.n)
	gemmInt8Ref(c.m, c.k, c.n, c.a, c.lda, c.za, c.b, c.ldb, out, c.n)
	return out
}

// checkInt8Kernels compares every kernel this machine runs (including the
// forced pure-Go one) against the reference, bit for bit.
func checkInt8Kernels(t *testing.T, c int8Case) {
	t.Helper()
	want := c.ref()
	for _, kern := range int8Kernels() {
		b := c.pack(t, kern)
		got := make([]int32, c.m*c.n)
		if err := GemmInt8S32(c.m, c.a, c.lda, c.za, b, got, c.n); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, want); i >= 0 {
			t.Fatalf("%s, %d×%d×%d za=%d: c[%d] = %d, reference %d", kern.name, c.m, c.k, c.n, c.za, i, got[i], want[i])
		}
	}
}

// pack packs the case's B for kern.
func (c int8Case) pack(t testing.TB, kern *int8Kernel) *Int8B {
	b, err := packInt8BFor(kern, c.k, c.n, c.b, c.ldb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func firstDiff[T comparable](a, b []T) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestGemmInt8MatchesReferenceOnOddSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 8))
	sizes := [][3]int{{1, 1, 1}, {1, 2, 16}, {6, 3, 16}, {7, 9, 17}, {5, 31, 33}, {13, 64, 10}, {1, 577, 10}, {37, 289, 65}, {200, 75, 31}}
	for range 20 {
		sizes = append(sizes, [3]int{1 + rng.IntN(40), 1 + rng.IntN(300), 1 + rng.IntN(70)})
	}
	for _, s := range sizes {
		checkInt8Kernels(t, newInt8Case(rng, s[0], s[1], s[2]))
	}
}

// TestGemmInt8ExtremesDoNotSaturate is the case vpmaddubsw gets wrong:
// uint8 255 (zero point 0) times int8 127 and −127 in every pair, whose
// pair sums ±64770 overflow int16.
func TestGemmInt8ExtremesDoNotSaturate(t *testing.T) {
	for _, za := range []uint8{0, 255, 128} {
		c := int8Case{m: 7, k: 301, n: 19, lda: 301, ldb: 19, za: za}
		c.a = make([]uint8, c.m*c.lda)
		for i := range c.a {
			switch za {
			case 0:
				c.a[i] = 255 // a − za = 255
			case 255:
				c.a[i] = 0 // a − za = −255
			default:
				c.a[i] = uint8(255 * (i % 2))
			}
		}
		c.b = make([]int8, c.k*c.ldb)
		for i := range c.b {
			c.b[i] = 127
			if i%3 == 0 {
				c.b[i] = -127
			}
		}
		checkInt8Kernels(t, c)
		want := c.ref()
		if za == 0 && want[0] == 0 {
			t.Fatal("extreme case is trivial")
		}
	}
}

func TestGemmInt8LargeRunsInParallelTheSame(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	checkInt8Kernels(t, newInt8Case(rng, 257, 289, 67)) // ≥ 2^20 MACs: split between workers
}

func TestGemmInt8Epilogues(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 9))
	c := newInt8Case(rng, 23, 145, 37)
	b, err := PackInt8B(c.k, c.n, c.b, c.ldb)
	if err != nil {
		t.Fatal(err)
	}
	goB := c.pack(t, &int8GoKernel)
	sums := c.ref()
	for _, relu := range []bool{false, true} {
		rq := &Requant{Scale: make([]float32, c.n), Bias: make([]float32, c.n), ReLU: relu, OutScale: 0.05, OutZero: 7}
		for j := range c.n {
			rq.Scale[j] = 1e-4 * (1 + rng.Float32())
			rq.Bias[j] = rng.Float32() - 0.5
		}
		wantF := make([]float32, c.m*c.n)
		wantU := make([]uint8, c.m*c.n)
		for i := range c.m {
			for j := range c.n {
				f := float64(sums[i*c.n+j])*float64(rq.Scale[j]) + float64(rq.Bias[j])
				if relu {
					f = math.Max(f, 0)
				}
				wantF[i*c.n+j] = float32(f)
				q := math.RoundToEven(f/float64(rq.OutScale)) + float64(rq.OutZero)
				wantU[i*c.n+j] = uint8(math.Max(0, math.Min(255, q)))
			}
		}
		for _, kern := range int8Kernels() {
			kb := c.pack(t, kern)
			gotF := make([]float32, c.m*c.n)
			if err := GemmInt8F32(c.m, c.a, c.lda, c.za, kb, rq, gotF, c.n); err != nil {
				t.Fatal(err)
			}
			for i := range gotF {
				if d := math.Abs(float64(gotF[i] - wantF[i])); d > 1e-5*(1+math.Abs(float64(wantF[i]))) {
					t.Fatalf("%s relu=%v: f32 c[%d] = %v, want %v", kern.name, relu, i, gotF[i], wantF[i])
				}
			}
			gotU := make([]uint8, c.m*c.n)
			if err := GemmInt8U8(c.m, c.a, c.lda, c.za, kb, rq, gotU, c.n); err != nil {
				t.Fatal(err)
			}
			off := 0
			for i := range gotU {
				if d := int(gotU[i]) - int(wantU[i]); d < -1 || d > 1 {
					t.Fatalf("%s relu=%v: u8 c[%d] = %d, want %d", kern.name, relu, i, gotU[i], wantU[i])
				} else if d != 0 {
					off++ // float32 vs float64 rounding at a tie
				}
			}
			if off > len(gotU)/100 {
				t.Fatalf("%s: %d of %d uint8 outputs off by one", kern.name, off, len(gotU))
			}
		}
		// Every kernel gives the same bits after the shared epilogue.
		ref := make([]uint8, c.m*c.n)
		if err := GemmInt8U8(c.m, c.a, c.lda, c.za, goB, rq, ref, c.n); err != nil {
			t.Fatal(err)
		}
		got := make([]uint8, c.m*c.n)
		if err := GemmInt8U8(c.m, c.a, c.lda, c.za, b, rq, got, c.n); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, ref) {
			t.Fatalf("default kernel %s and the Go kernel differ after the epilogue", defaultInt8Kernel.name)
		}
	}
}

func TestQuantizeU8(t *testing.T) {
	for _, tc := range []struct {
		f    float32
		inv  float32
		z    uint8
		want uint8
	}{
		{0, 10, 3, 3}, {2.5, 1, 0, 2}, {3.5, 1, 0, 4}, {3.5, 1, 250, 254}, {0.26, 10, 1, 4}, {-1, 10, 5, 0}, {100, 10, 0, 255},
		{float32(math.NaN()), 10, 9, 9}, {float32(math.Inf(1)), 1, 0, 255}, {float32(math.Inf(-1)), 1, 4, 0},
	} {
		if got := QuantizeU8(tc.f, tc.inv, tc.z); got != tc.want {
			t.Errorf("QuantizeU8(%v, %v, %d) = %d, want %d", tc.f, tc.inv, tc.z, got, tc.want)
		}
	}
}

func TestGemmInt8RejectsBadShapes(t *testing.T) {
	if _, err := PackInt8B(maxInt8K+1, 1, make([]int8, maxInt8K+1), 1); err == nil {
		t.Error("K that can overflow int32 accepted")
	}
	if _, err := PackInt8B(3, 4, make([]int8, 11), 4); err == nil {
		t.Error("short B accepted")
	}
	b, err := PackInt8B(3, 4, make([]int8, 12), 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := GemmInt8S32(2, make([]uint8, 5), 3, 0, b, make([]int32, 8), 4); err == nil {
		t.Error("short A accepted")
	}
	if err := GemmInt8S32(2, make([]uint8, 6), 3, 0, b, make([]int32, 7), 4); err == nil {
		t.Error("short C accepted")
	}
	if err := GemmInt8U8(2, make([]uint8, 6), 3, 0, b, &Requant{Scale: make([]float32, 4)}, make([]uint8, 8), 4); err == nil {
		t.Error("uint8 output without a scale accepted")
	}
	if err := GemmInt8F32(2, make([]uint8, 6), 3, 0, b, &Requant{Scale: make([]float32, 3)}, make([]float32, 8), 4); err == nil {
		t.Error("too few scales accepted")
	}
}

func FuzzGemmInt8(f *testing.F) {
	f.Add(uint64(1), uint8(7), uint16(33), uint8(17))
	f.Add(uint64(2), uint8(1), uint16(1), uint8(1))
	f.Fuzz(func(t *testing.T, seed uint64, m uint8, k uint16, n uint8) {
		mm, kk, nn := int(m%64), 1+int(k%700), 1+int(n%80)
		checkInt8Kernels(t, newInt8Case(rand.New(rand.NewPCG(seed, 1)), mm, kk, nn))
	})
}

func BenchmarkGemmInt8(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	c := newInt8Case(rng, 256, 288, 64)
	out := make([]int32, c.m*c.n)
	for _, kern := range int8Kernels() {
		p := c.pack(b, kern)
		b.Run(kern.name, func(b *testing.B) {
			for b.Loop() {
				_ = GemmInt8S32(c.m, c.a, c.lda, c.za, p, out, c.n)
			}
			b.ReportMetric(float64(c.m*c.k*c.n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
		})
	}
}

// TestRequantTileU8MatchesGo compares the uint8 and float epilogues this
// machine runs (AVX-512 where it has it) with the Go definitions bit for
// bit, on tiles of every width up to two vector groups and past them, 1
// to 13 rows, with and without a bias, ReLU and (float) a residual, and
// with scales, biases and residuals that reach the clamps, NaN and ±Inf;
// the bytes between and after the output rows stay untouched.
func TestRequantTileU8MatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 4))
	special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, -0.0, 1e30, -1e30}
	for cols := 1; cols <= maxInt8NR+3; cols++ {
		for _, bias := range []bool{false, true} {
			for _, relu := range []bool{false, true} {
				rows, j0 := 1+rng.IntN(13), rng.IntN(5)
				lds, ldo := cols+rng.IntN(4), cols+rng.IntN(4)
				rq := &Requant{Scale: make([]float32, j0+cols), ReLU: relu, OutScale: 0.01 + rng.Float32(), OutZero: uint8(rng.IntN(256))}
				if bias {
					rq.Bias = make([]float32, j0+cols)
				}
				s, zs := make([]int32, rows*lds), make([]int32, cols)
				for i := range s {
					s[i] = rng.Int32N(1<<20) - 1<<19
				}
				for j := range cols {
					zs[j] = rng.Int32N(1<<16) - 1<<15
					rq.Scale[j0+j] = float32(rng.NormFloat64()) * 1e-4
					if rq.Bias != nil {
						rq.Bias[j0+j] = float32(rng.NormFloat64())
					}
					if rng.IntN(8) == 0 {
						rq.Scale[j0+j] = special[rng.IntN(len(special))]
					}
					if rq.Bias != nil && rng.IntN(8) == 0 {
						rq.Bias[j0+j] = special[rng.IntN(len(special))]
					}
				}
				inv := 1 / rq.OutScale
				got, want := make([]uint8, rows*ldo+1), make([]uint8, rows*ldo+1)
				for i := range got {
					got[i], want[i] = 0xAB, 0xAB // guard bytes between and past the rows
				}
				requantTileU8(got, ldo, rows, cols, s, lds, zs, rq, j0, inv)
				requantTileU8Go(want, ldo, rows, cols, s, lds, zs, rq, j0, inv)
				if i := firstDiff(got, want); i >= 0 {
					t.Fatalf("%d×%d bias=%v relu=%v: out[%d] = %d, Go %d", rows, cols, bias, relu, i, got[i], want[i])
				}
				gotF, wantF := make([]float32, rows*ldo+1), make([]float32, rows*ldo+1)
				for i := range gotF {
					gotF[i], wantF[i] = 7, 7
				}
				res := make([]float32, rows*ldo)
				for i := range res {
					res[i] = float32(rng.NormFloat64())
					if rng.IntN(8) == 0 {
						res[i] = special[rng.IntN(len(special))]
					}
				}
				for _, r := range [][]float32{nil, res} {
					requantTileF32(gotF, ldo, rows, cols, s, lds, zs, rq, j0, r)
					requantTileF32Go(wantF, ldo, rows, cols, s, lds, zs, rq, j0, r)
					for i := range gotF {
						if math.Float32bits(gotF[i]) != math.Float32bits(wantF[i]) {
							t.Fatalf("%d×%d bias=%v relu=%v residual=%v: float out[%d] = %v, Go %v", rows, cols, bias, relu, r != nil, i, gotF[i], wantF[i])
						}
					}
				}
			}
		}
	}
}

// TestQuantizeU8sMatchesGo compares the quantization this machine runs
// (AVX-512 where it has it) with QuantizeU8 bit for bit, on every length
// up to three vector groups, with values that round half way, reach the
// clamps, NaN and ±Inf, and leaves the byte past dst alone.
func TestQuantizeU8sMatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 9))
	special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, -0.0, 1e30, -1e30, 0.5, 1.5, -2.5}
	for n := 1; n <= 51; n++ {
		inv := 1 / (0.001 + rng.Float32())
		z := uint8(rng.IntN(256))
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(rng.NormFloat64()) * 200 / inv
			if rng.IntN(6) == 0 {
				src[i] = special[rng.IntN(len(special))]
			}
		}
		got := make([]uint8, n+1)
		got[n] = 0xAB
		QuantizeU8s(got[:n], src, inv, z)
		for i, f := range src {
			if want := QuantizeU8(f, inv, z); got[i] != want {
				t.Fatalf("n=%d: dst[%d] = %d for %v, QuantizeU8 gives %d", n, i, got[i], f, want)
			}
		}
		if got[n] != 0xAB {
			t.Fatalf("n=%d: the byte past dst was written", n)
		}
	}
}
