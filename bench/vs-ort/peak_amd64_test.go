package main

import (
	"testing"

	"golang.org/x/sys/cpu"
)

func TestPeakLoopsCompute(t *testing.T) {
	if _, ok := fmaStep(1); !ok {
		t.Skip("no AVX2 FMA on this CPU")
	}
	// 12 chains of x ← 0.999999·x + 1e-6 from 1.0 stay at 1.0 (to float32
	// precision), so lane 0 of their sum is about 12.
	loops := map[string]func(int) float32{"fmaLoop": fmaLoop}
	if cpu.X86.HasAVX512F {
		loops["fmaLoop512"] = fmaLoop512
	}
	for name, loop := range loops {
		if v := loop(1000); v < 11.9 || v > 12.1 {
			t.Errorf("%s(1000) = %v, want about 12", name, v)
		}
	}
}
