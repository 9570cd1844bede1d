package tensor

import "golang.org/x/sys/cpu"

// kern6x16AVX2 is the AVX2+FMA micro-kernel in kernel_amd64.s. It
// implements the kernel.fn contract on raw pointers; the caller checks the
// lengths.
//
//go:noescape
func kern6x16AVX2(k int, a, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

// avx2Kernel is the 6×16 AVX2+FMA micro-kernel: 12 YMM accumulators, two
// loads of B and six broadcasts of A per k step.
var avx2Kernel = kernel{
	name: "avx2-6x16",
	mr:   6, nr: 16,
	kc: 320, mc: 96,
	fn: func(k int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32) {
		// Bounds checks the assembly cannot do.
		_ = a[k*6-1]
		_ = b[(k-1)*ldb+15]
		_ = c[5*ldc+15]
		kern6x16AVX2(k, &a[0], &b[0], ldb, &c[0], ldc, alpha, beta)
	},
}

// defaultKernel is the fastest micro-kernel this CPU supports; it is fixed
// at start-up.
var defaultKernel = cpuKernels()[0]

// cpuKernels lists the kernels this machine can run, fastest first.
func cpuKernels() []*kernel {
	var ks []*kernel
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, &avx2Kernel)
	}
	return append(ks, &goKernel)
}
