package nn_test

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/nn"
	"github.com/fashion-classifier/fashion/internal/optim"
)

// TestTrainStepManyProcs runs a training step of the default and the
// MobileNet architecture with a
// batch of 128 at GOMAXPROCS=128, what `fashion train -threads 128` does:
// it used to hang in the depthwise convolution's backward pass.
func TestTrainStepManyProcs(t *testing.T) {
	if testing.Short() {
		t.Skip("a full training step per architecture at 128 threads")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(128))
	for _, name := range []string{"vgg", "mobilenetv3-small"} {
		a, err := arch.LookupArch(name)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		net := a.Build(rng, 10)
		x := nn.NewTensor(128, 28, 28, 1)
		for i := range x.Data {
			x.Data[i] = float32(rng.NormFloat64())
		}
		labels := make([]uint8, 128)
		for i := range labels {
			labels[i] = uint8(rng.IntN(10))
		}
		done := make(chan float64, 1)
		go func() {
			loss, g, _ := (&nn.CrossEntropy{}).Loss(net.Forward(x, true), labels)
			net.Backward(g)
			(&optim.SGD{Momentum: 0.9}).Step(net.Params(), 0.01)
			done <- loss
		}()
		select {
		case loss := <-done:
			if !(loss > 0) {
				t.Errorf("%s: loss %v", name, loss)
			}
		case <-time.After(3 * time.Minute):
			t.Fatalf("%s: a training step at GOMAXPROCS=128 with a batch of 128 did not return", name)
		}
	}
}
