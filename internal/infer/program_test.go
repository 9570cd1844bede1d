package infer

import (
	"math/rand/v2"
	"testing"

	"github.com/fashion-classifier/fashion/internal/kernels"
)

// TestSlotsShareBuffers: a chain of steps alternates between two
// buffers, not one per slot; a branch that is read at the end keeps its
// own buffer alive meanwhile; every batch size reuses the same buffers; the answers are
// those of the chain.
func TestSlotsShareBuffers(t *testing.T) {
	const size, chain = 37, 6
	b := NewBuilder(size)
	prev := b.Input()
	var branch int
	for i := range chain {
		out := b.Slot()
		b.Add(&Unary{In: prev, Out: out, Size: size, Act: kernels.Act{Kind: kernels.ActReLU}})
		if i == 1 {
			branch = out // read again by the sum at the end
		}
		prev = out
	}
	sum := b.Slot()
	b.Add(&Binary{A: prev, BSlot: branch, Out: sum, Op: OpAdd, Size: size, BSize: size})
	p, err := b.Finish(sum, size, false)
	if err != nil {
		t.Fatal(err)
	}
	st := p.NewState()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{5, 2, 5} {
		x := make([]float32, n*size)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		got := p.Run(st, x, n)
		for i, v := range x {
			if want := 2 * max(v, 0); got[i] != want {
				t.Fatalf("batch %d: output %d = %v, want %v", n, i, got[i], want)
			}
		}
		// The branch's buffer and two that the chain alternates between,
		// one of which the sum takes: three of the largest batch's size.
		if m, want := st.Memory(), 3*5*size; m != want {
			t.Errorf("batch %d: the state holds %d values, want %d (3 buffers of the largest batch)", n, m, want)
		}
	}
}
