package blas

import (
	"runtime"
	"testing"

	"github.com/fashion-classifier/fashion/internal/cputime"
)

// benchShapes are the products training and inference actually run, plus
// 512³ for comparison with published figures.
var benchShapes = []struct {
	name           string
	transA, transB bool
	m, n, k        int
}{
	{"conv_fwd_NN_M25088_N64_K288", false, false, 25088, 64, 288},
	{"conv_dW_TN_M288_N64_K25088", true, false, 288, 64, 25088},
	{"conv_dCol_NT_M25088_N288_K64", false, true, 25088, 288, 64},
	{"linear_NN_M128_N256_K1152", false, false, 128, 256, 1152},
	{"linear_NT_M128_N1152_K256", false, true, 128, 1152, 256},
	{"infer_NN_M49_N64_K288", false, false, 49, 64, 288},
	{"infer_NN_M1_N256_K1152", false, false, 1, 256, 1152},
	{"square_NN_512", false, false, 512, 512, 512},
}

// benchOperands allocates operands for a shape with tight strides.
func benchOperands(transA, transB bool, m, n, k int) (a []float32, lda int, b []float32, ldb int, c []float32) {
	rng := newRand(9)
	lda, ldb = k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	return randSlice(rng, m*k), lda, randSlice(rng, k*n), ldb, make([]float32, m*n)
}

func BenchmarkGemm(b *testing.B) {
	threads := runtime.GOMAXPROCS(0)
	for _, kern := range cpuKernels() {
		for _, s := range benchShapes {
			if kern == &goKernel && s.m*s.n*s.k > 1<<24 {
				continue // the portable kernel would take seconds per shape
			}
			b.Run(kern.name+"/"+s.name, func(b *testing.B) {
				a, lda, bm, ldb, c := benchOperands(s.transA, s.transB, s.m, s.n, s.k)
				th := 1
				if s.m*s.n*s.k >= parallelMinWork {
					th = threads
				}
				cpu0, cpuOK := cputime.Process()
				for b.Loop() {
					gemm(kern, th, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
				}
				reportGFLOPS(b, s.m, s.n, s.k)
				if cpu1, ok := cputime.Process(); ok && cpuOK && cpu1 > cpu0 {
					// On a shared machine wall-clock rates depend on the
					// other load; the rate per CPU-second consumed does
					// much less (with 2 threads its ideal is one core's).
					flops := 2 * float64(s.m) * float64(s.n) * float64(s.k) * float64(b.N)
					b.ReportMetric(flops/(cpu1-cpu0).Seconds()/1e9, "GFLOP/cpu-s")
				}
			})
		}
	}
	b.Run("reference/linear_NN_M128_N256_K1152", func(b *testing.B) {
		const m, n, k = 128, 256, 1152
		a, lda, bm, ldb, c := benchOperands(false, false, m, n, k)
		for b.Loop() {
			gemmRef(false, false, m, n, k, 1, a, lda, bm, ldb, 0, c, n)
		}
		reportGFLOPS(b, m, n, k)
	})
}

// reportGFLOPS reports the rate of 2·m·n·k floating-point operations per
// iteration.
func reportGFLOPS(b *testing.B, m, n, k int) {
	flops := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
