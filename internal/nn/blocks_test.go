package nn

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// TestDepthwiseTrainingStepManyProcs is the regression test for the
// deadlock of `fashion train -arch mobilenetv3-small -threads 128`: the
// depthwise backward pass sent one partial weight gradient per worker
// into a 64-slot channel it drained only after every worker had finished,
// so with GOMAXPROCS=128 and a batch of 128 it never returned.
func TestDepthwiseTrainingStepManyProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(128))
	rng := rand.New(rand.NewPCG(1, 2))
	net := NewSequential(NewDepthwiseConv(rng, 8, 3, 1, 1), NewBatchNorm(8), NewActivation(HardSwish), NewSqueezeExcite(rng, 8, 4))
	x := randTensor(rng, 128, 6, 6, 8)
	done := make(chan *Tensor, 1)
	go func() {
		y := net.Forward(x, true)
		done <- net.Backward(y)
	}()
	select {
	case dx := <-done:
		if dx.Shape() != x.Shape() {
			t.Fatalf("input gradient has shape %v, want %v", dx, x)
		}
	case <-time.After(time.Minute):
		t.Fatal("a depthwise training step at GOMAXPROCS=128 with a batch of 128 did not return")
	}
}
