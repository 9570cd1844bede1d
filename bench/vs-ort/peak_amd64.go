package main

import "golang.org/x/sys/cpu"

// fmaLoop is in peak_amd64.s.
//
//go:noescape
func fmaLoop(iters int) float32

// fmaStep runs iters steps of flopsPerStep FLOP each, or reports false when
// this CPU lacks AVX2 and FMA.
func fmaStep(iters int) (float32, bool) {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA {
		return 0, false
	}
	return fmaLoop(iters), true
}

// flopsPerStep is the FLOP count of one step of fmaLoop: 12 fused
// multiply-adds on 8 lanes.
const flopsPerStep = 12 * 8 * 2
