package blas

import "golang.org/x/sys/cpu"

// kern6x16AVX2 is the AVX2+FMA micro-kernel in kernel_amd64.s. It
// implements the kernel.fn contract on raw pointers; the caller checks the
// lengths.
//
//go:noescape
func kern6x16AVX2(k int, a *float32, ars, aks int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

// avx2Kernel is the 6×16 AVX2+FMA micro-kernel: 12 YMM accumulators, two
// loads of B and six broadcasts of A per k step.
var avx2Kernel = kernel{
	name: "avx2-6x16",
	mr:   6, nr: 16,
	kc: 320, mc: 96, directA: true,
	fn: func(k int, a []float32, ars, aks int, b []float32, ldb int, c []float32, ldc int, alpha, beta float32) {
		// Bounds checks the assembly cannot do.
		_ = a[5*ars+(k-1)*aks]
		_ = b[(k-1)*ldb+15]
		_ = c[5*ldc+15]
		kern6x16AVX2(k, &a[0], ars, aks, &b[0], ldb, &c[0], ldc, alpha, beta)
	},
	gemv: gemvAVX2,
}

// gemv16AVX2 is in gemv_amd64.s; it implements kernel.gemv on raw
// pointers.
//
//go:noescape
func gemv16AVX2(k int, x, b *float32, ldb int, y *float32)

// gemvAVX2 is kernel.gemv for the AVX2 and AVX-512 kernels.
func gemvAVX2(k int, x, b []float32, ldb int, y []float32) {
	_, _, _ = x[k-1], b[(k-1)*ldb+15], y[15]
	gemv16AVX2(k, &x[0], &b[0], ldb, &y[0])
}

// kern12x32AVX512 is the AVX-512 micro-kernel in kernel_amd64.s, with the
// same contract as kern6x16AVX2.
//
//go:noescape
func kern12x32AVX512(k int, a *float32, ars, aks int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

// avx512Kernel is the 12×32 AVX-512 micro-kernel: 24 ZMM accumulators, two
// loads of B and twelve broadcasts of A per k step. It is preferred to the
// AVX2 kernel where both run: on the convolution and 512³ products it
// measured 1.3–1.6 times the AVX2 kernel's rate per core. Its A sliver of
// kc·12 floats (13.5 KiB) stays in the L1 cache while B panels stream past.
var avx512Kernel = kernel{
	name: "avx512-12x32",
	mr:   12, nr: 32,
	kc: 288, mc: 96, directA: true,
	fn: func(k int, a []float32, ars, aks int, b []float32, ldb int, c []float32, ldc int, alpha, beta float32) {
		_ = a[11*ars+(k-1)*aks]
		_ = b[(k-1)*ldb+31]
		_ = c[11*ldc+31]
		kern12x32AVX512(k, &a[0], ars, aks, &b[0], ldb, &c[0], ldc, alpha, beta)
	},
	gemv: gemvAVX2,
}

//go:generate go run gen_kernels.go

// defaultKernel is the fastest micro-kernel this CPU supports; it is fixed
// at start-up.
var defaultKernel = cpuKernels()[0]

// cpuKernels lists the kernels this machine can run, fastest first.
func cpuKernels() []*kernel {
	var ks []*kernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, &avx512Kernel)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, &avx2Kernel)
	}
	return append(ks, &goKernel)
}
