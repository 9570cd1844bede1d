//go:build !amd64

package blas

// defaultKernel is the micro-kernel Gemm uses: the portable one on this
// architecture.
var defaultKernel = &goKernel

// cpuKernels lists the kernels this machine can run, for tests and
// benchmarks.
func cpuKernels() []*kernel { return []*kernel{&goKernel} }
