package cputime

import "testing"

func TestProcessAdvancesWithWork(t *testing.T) {
	a, ok := Process()
	if !ok {
		t.Skip("process CPU time is not measured on this system")
	}
	x := 0.0
	for i := range 20_000_000 {
		x += float64(i % 7)
	}
	b, _ := Process()
	if b <= a {
		t.Errorf("CPU time went from %v to %v over a busy loop (x=%v)", a, b, x)
	}
}
