package blas

import (
	"math"
	"testing"
)

// TestGemmOverlapA checks products whose A has overlapping stored rows
// (lda smaller than the row length), the layout of a convolution's patches
// read in place from a padded image, against the reference on odd sizes,
// for every kernel, both A-reading strategies, one and several goroutines.
func TestGemmOverlapA(t *testing.T) {
	cases := []struct {
		transA, transB bool
		m, n, k, lda   int
		alpha, beta    float32
	}{
		{m: 97, n: 33, k: 96, lda: 32, alpha: 1, beta: 0},       // a 3×3 convolution's kernel row over 32 channels
		{m: 211, n: 17, k: 21, lda: 7, alpha: 1, beta: 1},       // odd channel count, accumulate
		{m: 13, n: 70, k: 300, lda: 1, alpha: -0.5, beta: 0.5},  // sliding window over a vector
		{m: 5, n: 3, k: 9, lda: 3, transB: true, alpha: 1},      // tiny, B transposed
		{transA: true, m: 96, n: 32, k: 850, lda: 32, alpha: 1}, // a weight gradient over 850 pixels
		{transA: true, m: 45, n: 19, k: 401, lda: 15, alpha: 2, beta: 1},
		{transA: true, transB: true, m: 29, n: 40, k: 77, lda: 9, alpha: 1, beta: -1},
		{m: 400, n: 64, k: 600, lda: 64, alpha: 1}, // crosses the K block
	}
	rng := newRand(11)
	for _, tc := range cases {
		ar, ac := tc.m, tc.k
		if tc.transA {
			ar, ac = tc.k, tc.m
		}
		a := randSlice(rng, (ar-1)*tc.lda+ac)
		br, bc := tc.k, tc.n
		if tc.transB {
			br, bc = tc.n, tc.k
		}
		b := randSlice(rng, br*bc)
		c := randSlice(rng, tc.m*tc.n)
		want := append([]float32(nil), c...)
		gemmRef(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, tc.lda, b, bc, tc.beta, want, tc.n)
		tol := 4 * 6e-8 * math.Sqrt(float64(tc.k)+1) * (math.Abs(float64(tc.alpha))*float64(tc.k) + math.Abs(float64(tc.beta)) + 1)
		for _, kern := range testKernels() {
			for _, threads := range []int{1, 2} {
				got := append([]float32(nil), c...)
				gemmA(kern, threads, true, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, tc.lda, b, bc, tc.beta, got, tc.n)
				for i, g := range got {
					if d := math.Abs(float64(g - want[i])); !(d <= tol) {
						t.Fatalf("%+v kernel %s threads %d: C[%d] = %v, want %v", tc, kern.name, threads, i, g, want[i])
					}
				}
			}
		}
	}
}

// TestGemmOverlapABadArguments checks that overlapping rows are still
// bounds-checked and that Gemm itself keeps rejecting them.
func TestGemmOverlapABadArguments(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	c := make([]float32, 16)
	mustPanic("Gemm with lda < k", func() { Gemm(false, false, 4, 4, 6, 1, make([]float32, 100), 2, make([]float32, 24), 4, 0, c, 4) })
	mustPanic("A too short", func() {
		GemmSerialOverlapA(false, false, 4, 4, 6, 1, make([]float32, 11), 2, make([]float32, 24), 4, 0, c, 4)
	})
	mustPanic("lda 0", func() {
		GemmSerialOverlapA(false, false, 4, 4, 6, 1, make([]float32, 100), 0, make([]float32, 24), 4, 0, c, 4)
	})
}
