package blas

import (
	"fmt"
	"runtime/debug"
	"testing"
)

// TestGemmPackedMatchesReference checks the packed-B product against the
// naive loop on odd sizes, for every kernel this CPU runs, both
// orientations of the stored B and several alpha/beta.
func TestGemmPackedMatchesReference(t *testing.T) {
	rng := newRand(11)
	for _, kern := range testKernels() {
		for _, sz := range [][3]int{{1, 1, 1}, {1, 10, 1152}, {2, 40, 33}, {1, 256, 1152}, {5, 17, 3}, {7, 33, 290}, {13, 64, 700}, {97, 45, 31}, {200, 16, 9}} {
			m, n, k := sz[0], sz[1], sz[2]
			for _, transB := range []bool{false, true} {
				for _, ab := range [][2]float32{{1, 0}, {0.5, 1}, {-1, 0.25}} {
					name := fmt.Sprintf("%s/m%d_n%d_k%d_tb%v_a%v_b%v", kern.name, m, n, k, transB, ab[0], ab[1])
					lda := k + 3
					a := randSlice(rng, m*lda)
					ldb := n + 1
					if transB {
						ldb = k + 2
					}
					b := randSlice(rng, k*ldb+n*ldb)
					ldc := n + 5
					c := randSlice(rng, m*ldc)
					want := append([]float32(nil), c...)
					gemmRef(false, transB, m, n, k, ab[0], a, lda, b, ldb, ab[1], want, ldc)
					pb := packBWith(kern, transB, k, n, b, ldb)
					GemmPacked(m, ab[0], a, lda, pb, ab[1], c, ldc)
					for i := range c {
						if d := c[i] - want[i]; d > 1e-3 || d < -1e-3 {
							t.Fatalf("%s: c[%d] = %v, want %v", name, i, c[i], want[i])
						}
					}
				}
			}
		}
	}
}

func TestGemmPackedDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	// A garbage collection empties the GEMM workspace pool, whose refill
	// would count here; steady state is what is measured.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	a, b, c := make([]float32, 6*64), make([]float32, 64*32), make([]float32, 6*32)
	pb := PackB(false, 64, 32, b, 32)
	GemmPacked(6, 1, a, 64, pb, 0, c, 32)
	if n := testing.AllocsPerRun(100, func() { GemmPacked(6, 1, a, 64, pb, 0, c, 32) }); n > 0 {
		t.Fatalf("GemmPacked allocated %v times per call", n)
	}
}

// TestGemmPackedColsCoverTheProduct computes a product in column ranges
// and checks it against the whole.
func TestGemmPackedColsCoverTheProduct(t *testing.T) {
	rng := newRand(12)
	m, n, k := 29, 100, 77
	a, b := randSlice(rng, m*k), randSlice(rng, k*n)
	pb := PackB(false, k, n, b, n)
	want, got := make([]float32, m*n), make([]float32, m*n)
	GemmPacked(m, 1, a, k, pb, 0, want, n)
	step := 2 * pb.Align()
	for j0 := 0; j0 < n; j0 += step {
		GemmPackedCols(m, j0, min(n, j0+step), 1, a, k, pb, 0, got, n)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("c[%d] = %v by columns, %v whole", i, got[i], want[i])
		}
	}
}

func TestGemmPackedOneRowDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	// A garbage collection empties the GEMM workspace pool, whose refill
	// would count here; steady state is what is measured.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	a, b, c := make([]float32, 64), make([]float32, 64*40), make([]float32, 40)
	pb := PackB(false, 64, 40, b, 40) // 40 columns: a partial last panel
	GemmPacked(1, 1, a, 64, pb, 0, c, 40)
	if n := testing.AllocsPerRun(100, func() { GemmPacked(1, 1, a, 64, pb, 0, c, 40) }); n > 0 {
		t.Fatalf("GemmPacked with one row allocated %v times per call", n)
	}
}

// TestRepackMatchesPackB repacks a new matrix into an old packing, plain
// and transposed, with a partial last panel, and checks that the result is
// the fresh packing of the new matrix and multiplies like it.
func TestRepackMatchesPackB(t *testing.T) {
	rng := newRand(13)
	for _, transB := range []bool{false, true} {
		k, n := 37, 45
		ldb := n
		if transB {
			ldb = k
		}
		b1, b2 := randSlice(rng, k*n), randSlice(rng, k*n)
		pb := PackB(transB, k, n, b1, ldb)
		pb.Repack(transB, b2, ldb)
		fresh := PackB(transB, k, n, b2, ldb)
		if len(pb.data) != len(fresh.data) {
			t.Fatalf("transB=%v: %d packed values, want %d", transB, len(pb.data), len(fresh.data))
		}
		for i := range fresh.data {
			if pb.data[i] != fresh.data[i] {
				t.Fatalf("transB=%v: packed[%d] = %v, want %v", transB, i, pb.data[i], fresh.data[i])
			}
		}
		m := 7
		a := randSlice(rng, m*k)
		got, want := make([]float32, m*n), make([]float32, m*n)
		GemmPacked(m, 1, a, k, pb, 0, got, n)
		Gemm(false, transB, m, n, k, 1, a, k, b2, ldb, 0, want, n)
		for i := range want {
			if d := got[i] - want[i]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("transB=%v: c[%d] = %v, want %v", transB, i, got[i], want[i])
			}
		}
	}
}
