package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// gemmRef is the naive triple loop Gemm is checked against. It accumulates
// in float64 so that its own rounding error is negligible.
func gemmRef(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for q := 0; q < k; q++ {
				var av, bv float32
				if transA {
					av = a[q*lda+i]
				} else {
					av = a[i*lda+q]
				}
				if transB {
					bv = b[j*ldb+q]
				} else {
					bv = b[q*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			r := float64(alpha) * s
			if beta != 0 {
				r += float64(beta) * float64(c[i*ldc+j])
			}
			c[i*ldc+j] = float32(r)
		}
	}
}

// testKernels returns every kernel this CPU can run, each also in a variant
// with the opposite choice of reading A in place or packing it, so that
// both paths are exercised.
func testKernels() []*kernel {
	var ks []*kernel
	for _, k := range cpuKernels() {
		v := *k
		v.directA = !k.directA
		if v.directA {
			v.name += "+directA"
		} else {
			v.name += "+packA"
		}
		ks = append(ks, k, &v)
	}
	return ks
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// gemmCase is one random product: op(A) is m×k, op(B) is k×n, and the
// matrices are stored with pad extra columns per row.
type gemmCase struct {
	transA, transB bool
	m, n, k        int
	pad            int
	alpha, beta    float32
}

func (tc gemmCase) String() string {
	t := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s/m=%d,n=%d,k=%d,pad=%d,alpha=%g,beta=%g", t(tc.transA), t(tc.transB), tc.m, tc.n, tc.k, tc.pad, tc.alpha, tc.beta)
}

// operands returns random A, B and C for tc with their strides.
func (tc gemmCase) operands(rng *rand.Rand) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	lda, ldb, ldc = ac+tc.pad, bc+tc.pad, tc.n+tc.pad
	a = randSlice(rng, max(0, (ar-1)*lda+ac))
	b = randSlice(rng, max(0, (br-1)*ldb+bc))
	c = randSlice(rng, max(0, (tc.m-1)*ldc+tc.n))
	if tc.beta == 0 {
		// beta == 0 must ignore C entirely, NaNs included.
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	return
}

// gemmFixture is a gemmCase with random operands and the reference result,
// computed once and checked against every kernel.
type gemmFixture struct {
	tc            gemmCase
	a, b, c, want []float32
	lda, ldb, ldc int
	tol           float64
}

func newGemmFixture(tc gemmCase, rng *rand.Rand) *gemmFixture {
	f := &gemmFixture{tc: tc}
	f.a, f.lda, f.b, f.ldb, f.c, f.ldc = tc.operands(rng)
	f.want = append([]float32(nil), f.c...)
	gemmRef(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, f.a, f.lda, f.b, f.ldb, tc.beta, f.want, f.ldc)
	// Inputs are in [-1, 1], so the terms add up to at most |alpha|·k +
	// |beta| in magnitude; float32 rounding error in a blocked sum grows
	// roughly like √k·ε times that.
	scale := math.Abs(float64(tc.alpha))*float64(tc.k) + math.Abs(float64(tc.beta)) + 1
	f.tol = 4 * 6e-8 * math.Sqrt(float64(tc.k)+1) * scale
	return f
}

// check runs gemm with kern and threads and compares the result with the
// reference element by element.
func (f *gemmFixture) check(t *testing.T, kern *kernel, threads int) {
	t.Helper()
	tc := f.tc
	got := append([]float32(nil), f.c...)
	gemm(kern, threads, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, f.a, f.lda, f.b, f.ldb, tc.beta, got, f.ldc)
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.n; j++ {
			g, w := got[i*f.ldc+j], f.want[i*f.ldc+j]
			if d := math.Abs(float64(g) - float64(w)); !(d <= f.tol) {
				t.Fatalf("%s: kernel %s, %d threads: C[%d][%d] = %v, want %v (tolerance %g)", tc, kern.name, threads, i, j, g, w, f.tol)
			}
		}
	}
	// Padding between rows of C belongs to the caller and must be untouched.
	for i := 0; i+1 < tc.m; i++ {
		for j := tc.n; j < f.ldc; j++ {
			if g, w := got[i*f.ldc+j], f.c[i*f.ldc+j]; math.Float32bits(g) != math.Float32bits(w) {
				t.Fatalf("%s: kernel %s: padding C[%d][%d] changed from %v to %v", tc, kern.name, i, j, w, g)
			}
		}
	}
}

func TestGemmSmallSizes(t *testing.T) {
	sizes := []int{1, 2, 5, 7, 13, 17, 31, 67}
	kernels := testKernels()
	rng := newRand(2)
	for _, tA := range []bool{false, true} {
		for _, tB := range []bool{false, true} {
			for _, m := range sizes {
				for _, n := range sizes {
					for _, k := range sizes {
						// Cycle through scalars and padding so that every
						// shape is not run with every option.
						sel := (m + 3*n + 7*k) % 4
						f := newGemmFixture(gemmCase{
							transA: tA, transB: tB, m: m, n: n, k: k,
							pad:   []int{0, 3, 1, 16}[sel],
							alpha: []float32{1, -0.5, 2, 1}[sel],
							beta:  []float32{0, 1, -1.5, 0}[(sel+m)%4],
						}, rng)
						for _, kern := range kernels {
							f.check(t, kern, 1)
						}
					}
				}
			}
		}
	}
}

func TestGemmBlocking(t *testing.T) {
	// Shapes that cross the K block, the M block, the column block of B and
	// several tasks, on one and on several goroutines, for every kernel.
	cases := []gemmCase{
		{m: 129, n: 67, k: 513, pad: 1, alpha: 1, beta: 0},
		{transA: true, m: 200, n: 33, k: 700, pad: 0, alpha: 0.5, beta: 1},
		{transB: true, m: 131, n: 290, k: 64, pad: 2, alpha: 1, beta: -1},
		{transA: true, transB: true, m: 97, n: 45, k: 401, pad: 5, alpha: -1, beta: 0},
		{m: 1, n: 300, k: 257, alpha: 1, beta: 0.5},
		{m: 300, n: 1, k: 129, alpha: 1, beta: 0},
		{m: 7, n: 129, k: 1000, alpha: 1, beta: 0},
		// K much longer than m and n: split across goroutines.
		{transA: true, m: 30, n: 20, k: 2100, pad: 1, alpha: 1, beta: 0},
		{transB: true, m: 13, n: 35, k: 2500, alpha: -0.5, beta: 2},
		// Wide B: several column blocks of packed B.
		{m: 25, n: 1000, k: 300, pad: 1, alpha: 1, beta: 0.5},
		{transB: true, m: 3, n: 1000, k: 2100, alpha: 1, beta: 0},
	}
	kernels := testKernels()
	rng := newRand(3)
	for _, tc := range cases {
		t.Run(tc.String(), func(t *testing.T) {
			f := newGemmFixture(tc, rng)
			for _, kern := range kernels {
				for _, threads := range []int{1, 2, 3} {
					f.check(t, kern, threads)
				}
			}
		})
	}
}

// TestGemmKernelsAgree checks the kernels against each other directly, on a
// shape large enough for the public entry point to go parallel.
func TestGemmKernelsAgree(t *testing.T) {
	kerns := cpuKernels()
	if len(kerns) < 2 {
		t.Skip("only the portable kernel runs on this CPU")
	}
	rng := newRand(4)
	tc := gemmCase{transA: true, m: 150, n: 70, k: 300, pad: 3, alpha: 1, beta: 0}
	a, lda, b, ldb, c, ldc := tc.operands(rng)
	var results [][]float32
	for _, kern := range kerns {
		got := append([]float32(nil), c...)
		gemm(kern, 2, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, got, ldc)
		results = append(results, got)
	}
	for ki := 1; ki < len(kerns); ki++ {
		for i := 0; i < tc.m; i++ {
			for j := 0; j < tc.n; j++ {
				x, y := results[0][i*ldc+j], results[ki][i*ldc+j]
				if d := math.Abs(float64(x - y)); d > 1e-4 {
					t.Fatalf("C[%d][%d]: %s gives %v, %s gives %v", i, j, kerns[0].name, x, kerns[ki].name, y)
				}
			}
		}
	}
}

func TestGemmDegenerate(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name        string
		m, n, k     int
		alpha, beta float32
		c, want     []float32
	}{
		{"k=0 beta=0 clears NaN", 2, 2, 0, 1, 0, []float32{nan, nan, nan, 1}, []float32{0, 0, 0, 0}},
		{"k=0 scales", 1, 3, 0, 1, 2, []float32{1, 2, 3}, []float32{2, 4, 6}},
		{"alpha=0 keeps", 1, 2, 3, 0, 1, []float32{5, 6}, []float32{5, 6}},
		{"m=0", 0, 3, 3, 1, 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := make([]float32, tt.m*tt.k)
			b := make([]float32, tt.k*tt.n)
			Gemm(false, false, tt.m, tt.n, tt.k, tt.alpha, a, max(1, tt.k), b, max(1, tt.n), tt.beta, tt.c, max(1, tt.n))
			for i := range tt.want {
				if tt.c[i] != tt.want[i] {
					t.Fatalf("C = %v, want %v", tt.c, tt.want)
				}
			}
		})
	}
}

func TestGemmBadArgumentsPanic(t *testing.T) {
	s := make([]float32, 12)
	tests := []struct {
		name string
		f    func()
	}{
		{"negative m", func() { Gemm(false, false, -1, 2, 2, 1, s, 2, s, 2, 0, s, 2) }},
		{"lda too small", func() { Gemm(false, false, 2, 2, 3, 1, s, 2, s, 2, 0, s, 2) }},
		{"ldb too small for transB", func() { Gemm(false, true, 2, 2, 3, 1, s, 3, s, 2, 0, s, 2) }},
		{"a too short", func() { Gemm(false, false, 5, 2, 3, 1, s, 3, s, 2, 0, s, 2) }},
		{"c too short", func() { Gemm(false, false, 2, 7, 1, 1, s, 1, s, 7, 0, s, 7) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Gemm did not panic")
				}
			}()
			tt.f()
		})
	}
}

func TestGemmNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("under -race sync.Pool drops recycled buffers at random")
	}
	rng := newRand(5)
	m, n, k := 40, 30, 50
	a, b, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
	Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	allocs := testing.AllocsPerRun(20, func() {
		Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	})
	if allocs > 0 {
		t.Errorf("small Gemm allocates %v times per call, want 0", allocs)
	}
}

// FuzzGemm checks every kernel, on one and two goroutines, against the
// reference on shapes, transposes, strides and scalars chosen by the fuzzer.
func FuzzGemm(f *testing.F) {
	f.Add(uint8(5), uint8(7), uint8(3), false, false, uint8(0), float32(1), float32(0), uint64(1))
	f.Add(uint8(13), uint8(33), uint8(70), true, false, uint8(2), float32(-0.5), float32(1), uint64(2))
	f.Add(uint8(1), uint8(17), uint8(1), false, true, uint8(4), float32(2), float32(-1), uint64(3))
	f.Add(uint8(37), uint8(1), uint8(0), true, true, uint8(1), float32(1), float32(0.5), uint64(4))
	kernels := testKernels()
	f.Fuzz(func(t *testing.T, m, n, k uint8, transA, transB bool, pad uint8, alpha, beta float32, seed uint64) {
		if !(math.Abs(float64(alpha)) <= 4) || !(math.Abs(float64(beta)) <= 4) {
			t.Skip("scalars outside [-4, 4] only test float32 overflow")
		}
		fx := newGemmFixture(gemmCase{
			transA: transA, transB: transB,
			m: int(m % 40), n: int(n % 40), k: int(k % 80), pad: int(pad % 5),
			alpha: alpha, beta: beta,
		}, newRand(seed))
		for _, kern := range kernels {
			fx.check(t, kern, 1)
			fx.check(t, kern, 2)
		}
	})
}
