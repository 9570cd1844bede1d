package blas

import "golang.org/x/sys/cpu"

// int8Kern6x16AVX2 is the AVX2 int8 micro-kernel in gemm_int8_amd64.s. It
// implements int8Kernel.fn on raw pointers (kp2 ≥ 1); the caller checks
// the lengths.
//
//go:noescape
func int8Kern6x16AVX2(kp2 int, a *uint8, lda int, panel *int16, c *int32)

// int8AVX2Kernel is the 6×16 AVX2 int8 kernel: per pair of k, two loads
// of the B panel, six broadcasts of an A byte pair widened to int16, and
// twelve vpmaddwd into twelve int32 accumulators.
var int8AVX2Kernel = int8Kernel{
	name: "avx2-6x16",
	fn: func(kp2 int, a []uint8, lda int, panel []int16, c []int32) {
		if kp2 < 1 {
			clear(c[:int8MR*int8NR])
			return
		}
		_ = a[5*lda+2*kp2-1]
		_ = panel[kp2*2*int8NR-1]
		_ = c[int8MR*int8NR-1]
		int8Kern6x16AVX2(kp2, &a[0], lda, &panel[0], &c[0])
	},
}

// defaultInt8Kernel is the fastest int8 kernel this CPU runs, fixed at
// start-up.
var defaultInt8Kernel = int8Kernels()[0]

// int8Kernels lists the int8 kernels this machine can run, fastest first.
// An AVX-512 VNNI kernel (cpu.X86.HasAVX512VNNI) would go first; see the
// comment at the top of gemm_int8.go.
func int8Kernels() []*int8Kernel {
	var ks []*int8Kernel
	if cpu.X86.HasAVX2 {
		ks = append(ks, &int8AVX2Kernel)
	}
	return append(ks, &int8GoKernel)
}
