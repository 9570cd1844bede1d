//go:build !amd64

package blas

// defaultInt8Kernel is the int8 kernel on this architecture: the portable
// one.
var defaultInt8Kernel = &int8GoKernel

// int8KernelFor is the kernel PackInt8B packs for: the portable one.
func int8KernelFor(n int) *int8Kernel { return defaultInt8Kernel }

// int8Kernels lists the int8 kernels this machine can run.
func int8Kernels() []*int8Kernel { return []*int8Kernel{&int8GoKernel} }

// requantTileU8 is requantTileU8Go.
func requantTileU8(out []uint8, ldo, rows, cols int, s []int32, lds int, zs []int32, rq *Requant, j0 int, inv float32) {
	requantTileU8Go(out, ldo, rows, cols, s, lds, zs, rq, j0, inv)
}

// quantizeU8s is quantizeU8sGo.
func quantizeU8s(dst []uint8, src []float32, inv float32, z uint8) { quantizeU8sGo(dst, src, inv, z) }

// requantTileF32 is requantTileF32Go.
func requantTileF32(out []float32, ldo, rows, cols int, s []int32, lds int, zs []int32, rq *Requant, j0 int, res []float32) {
	requantTileF32Go(out, ldo, rows, cols, s, lds, zs, rq, j0, res)
}
