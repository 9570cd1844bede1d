package blas

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

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
	mr:   6, nr: 16,
	pairs: func(kp2 int, a []uint8, lda int, panel []int16, c []int32) {
		if kp2 < 1 {
			clear(c[:6*16])
			return
		}
		_ = a[5*lda+2*kp2-1]
		_ = panel[kp2*2*16-1]
		_ = c[6*16-1]
		int8Kern6x16AVX2(kp2, &a[0], lda, &panel[0], &c[0])
	},
}

// int8Kern12x32VNNI and int8Kern24x16VNNI are the AVX-512 VNNI int8
// micro-kernels in gemm_int8_amd64.s. They implement int8Kernel.quads on
// raw pointers (kq ≥ 1); the caller checks the lengths.
//
//go:noescape
func int8Kern12x32VNNI(kq int, a *uint8, lda int, panel *int8, c *int32)

//go:noescape
func int8Kern24x16VNNI(kq int, a *uint8, lda int, panel *int8, c *int32)

// int8VNNIKernel is the 12×32 AVX-512 VNNI kernel: per quad of k, two
// loads of the B panel, twelve broadcasts of a row's four A bytes, and
// 24 vpdpbusd into 24 int32 accumulators (64 multiply-adds each).
var int8VNNIKernel = vnniKernel("vnni-12x32", 12, 32, int8Kern12x32VNNI)

// int8VNNI16Kernel is the 24×16 AVX-512 VNNI kernel, for products of at
// most 16 columns, which fill only half of the 12×32 tile: per quad of
// k, one load of the B panel, 24 broadcasts and 24 vpdpbusd.
var int8VNNI16Kernel = vnniKernel("vnni-24x16", 24, 16, int8Kern24x16VNNI)

// vnniKernel wraps an mr×nr VNNI micro-kernel as an int8Kernel: the
// length checks its raw pointers need, and a cleared tile for kq = 0.
func vnniKernel(name string, mr, nr int, kern func(kq int, a *uint8, lda int, panel *int8, c *int32)) int8Kernel {
	return int8Kernel{
		name: name, mr: mr, nr: nr,
		quads: func(kq int, a []uint8, lda int, panel []int8, c []int32) {
			if kq < 1 {
				clear(c[:mr*nr])
				return
			}
			_ = a[(mr-1)*lda+4*kq-1]
			_ = panel[kq*4*nr-1]
			_ = c[mr*nr-1]
			kern(kq, &a[0], lda, &panel[0], &c[0])
		},
	}
}

// defaultInt8Kernel is the fastest int8 kernel this CPU runs, fixed at
// start-up.
var defaultInt8Kernel = int8Kernels()[0]

// int8KernelFor is the kernel PackInt8B packs a product of n columns
// for: the 24×16 VNNI kernel when n ≤ 16 (the 12×32 tile would be half
// empty), else the default.
func int8KernelFor(n int) *int8Kernel {
	if n <= 16 && defaultInt8Kernel == &int8VNNIKernel {
		return &int8VNNI16Kernel
	}
	return defaultInt8Kernel
}

// int8Kernels lists the int8 kernels this machine can run, fastest first.
func int8Kernels() []*int8Kernel {
	var ks []*int8Kernel
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512VNNI {
		ks = append(ks, &int8VNNIKernel, &int8VNNI16Kernel)
	}
	if cpu.X86.HasAVX2 {
		ks = append(ks, &int8AVX2Kernel)
	}
	return append(ks, &int8GoKernel)
}

// requantTileAVX512 is the AVX-512 int8 epilogue in gemm_int8_amd64.s:
// requantTileU8Go (flags bit 2) or requantTileF32Go for a tile of at
// most 32 columns on raw pointers (flags bit 0: bias, bit 1: ReLU, bit
// 3: res; ldo in bytes; bias and res are not read without their bits).
//
//go:noescape
func requantTileAVX512(rows, cols int, s *int32, lds int, zs *int32, scale, bias *float32, flags int, inv float32, z int32, out unsafe.Pointer, ldo int, res *float32)

// requantTileFast reports whether requantTileAVX512 takes a tile of rows
// × cols: with AVX-512, at most 32 columns (every kernel's nr, maxInt8NR).
func requantTileFast(rows, cols int) bool {
	return cpu.X86.HasAVX512F && rows >= 1 && cols >= 1 && cols <= 32
}

// requantTileArgs checks the lengths the assembly reads for a tile from
// column j0 and returns its flags (u8 adds bit 2) and bias pointer.
func requantTileArgs(rows, cols int, s []int32, lds int, zs []int32, rq *Requant, j0 int, u8 bool) (int, *float32) {
	_, _, _ = s[(rows-1)*lds+cols-1], zs[cols-1], rq.Scale[j0+cols-1]
	flags, bias := 0, &rq.Scale[j0]
	if rq.Bias != nil {
		_ = rq.Bias[j0+cols-1]
		flags, bias = 1, &rq.Bias[j0]
	}
	if rq.ReLU {
		flags |= 2
	}
	if u8 {
		flags |= 4
	}
	return flags, bias
}

// requantTileU8 is requantTileU8Go, in AVX-512 where it can be.
func requantTileU8(out []uint8, ldo, rows, cols int, s []int32, lds int, zs []int32, rq *Requant, j0 int, inv float32) {
	if !requantTileFast(rows, cols) {
		requantTileU8Go(out, ldo, rows, cols, s, lds, zs, rq, j0, inv)
		return
	}
	_ = out[(rows-1)*ldo+cols-1]
	flags, bias := requantTileArgs(rows, cols, s, lds, zs, rq, j0, true)
	requantTileAVX512(rows, cols, &s[0], lds, &zs[0], &rq.Scale[j0], bias, flags, inv, int32(rq.OutZero), unsafe.Pointer(&out[0]), ldo, bias)
}

// requantTileF32 is requantTileF32Go, in AVX-512 where it can be (the Go
// loop was a quarter of the int8 ResNet-20's time, whose residual blocks
// end in float32).
func requantTileF32(out []float32, ldo, rows, cols int, s []int32, lds int, zs []int32, rq *Requant, j0 int, res []float32) {
	if !requantTileFast(rows, cols) {
		requantTileF32Go(out, ldo, rows, cols, s, lds, zs, rq, j0, res)
		return
	}
	_ = out[(rows-1)*ldo+cols-1]
	flags, bias := requantTileArgs(rows, cols, s, lds, zs, rq, j0, false)
	rp := bias // not read without flag 8
	if res != nil {
		_ = res[(rows-1)*ldo+cols-1]
		flags, rp = flags|8, &res[0]
	}
	requantTileAVX512(rows, cols, &s[0], lds, &zs[0], &rq.Scale[j0], bias, flags, 0, 0, unsafe.Pointer(&out[0]), 4*ldo, rp)
}

// quantizeU8AVX512 is the AVX-512 quantization in gemm_int8_amd64.s:
// quantizeU8sGo for n values on raw pointers.
//
//go:noescape
func quantizeU8AVX512(n int, src *float32, inv float32, z int32, out *uint8)

// quantizeU8s is quantizeU8sGo, in AVX-512 where the CPU has it.
func quantizeU8s(dst []uint8, src []float32, inv float32, z uint8) {
	n := len(dst)
	if !cpu.X86.HasAVX512F || n == 0 {
		quantizeU8sGo(dst, src, inv, z)
		return
	}
	_ = src[n-1]
	quantizeU8AVX512(n, &src[0], inv, int32(z), &dst[0])
}
