package train

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/nn"
)

func dataset(t *testing.T) *idx.Dataset {
	t.Helper()
	dir := datatest.FashionMNISTDir(t)
	d, err := idx.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestTrainingLearns is the smoke test of the whole engine: a short run of
// the default architecture on part of the data must reach well above the
// 10% of guessing. Timings are not asserted.
func TestTrainingLearns(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for about a minute; run without -short")
	}
	d := dataset(t)
	res, err := Run(context.Background(), Config{
		Arch: "vgg", Epochs: 3, Seed: 1, Smoothing: 0.1,
		Augment:    Augment{Pad: 2, Flip: true},
		TrainLimit: 8192, TestLimit: 2000,
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.History {
		t.Logf("epoch %d: loss %.4f train %.4f test %.4f", e.Epoch, e.TrainLoss, e.TrainAcc, e.TestAcc)
	}
	if acc := res.Meta.TestAccuracy; acc < 0.80 {
		t.Errorf("test accuracy %.4f on 2,000 images after 3 short epochs, want > 0.80", acc)
	}
	if h := res.History; h[len(h)-1].TrainLoss >= h[0].TrainLoss {
		t.Errorf("training loss did not fall: %v → %v", h[0].TrainLoss, h[len(h)-1].TrainLoss)
	}
}

// tiny returns a small synthetic dataset: class c is a bright square at a
// class-specific place, so a network can learn it in a few steps.
func tiny(n int) *idx.Dataset {
	rng := rand.New(rand.NewPCG(9, 9))
	mk := func(n int) idx.Set {
		s := idx.Set{Images: idx.Images{N: n, Rows: 28, Cols: 28, Pix: make([]uint8, n*784)}, Labels: make([]uint8, n)}
		for i := range n {
			c := rng.IntN(10)
			s.Labels[i] = uint8(c)
			img := s.Images.Image(i)
			for y := range 6 {
				for x := range 6 {
					img[(2+(c/5)*12+y)*28+2+(c%5)*5+x] = 255
				}
			}
		}
		return s
	}
	return &idx.Dataset{Train: mk(n), Test: mk(200)}
}

// TestResumeAfterInterruption stops a run after its first epoch (as a
// killed process would leave it) and checks that a second run resumes from
// the checkpoint to the same weights as an uninterrupted run.
func TestResumeAfterInterruption(t *testing.T) {
	d := tiny(256)
	dir := t.TempDir()
	cfg := Config{Arch: "vgg", Epochs: 2, BatchSize: 64, Seed: 3}

	full, err := Run(context.Background(), cfg, d)
	if err != nil {
		t.Fatal(err)
	}

	ckpt := filepath.Join(dir, "run.ckpt")
	first := cfg
	first.Epochs = 2
	first.Checkpoint = ckpt
	ctx, cancel := context.WithCancel(context.Background())
	first.Log = cancelAfterEpochs(cancel, 1)
	if _, err := Run(ctx, first, d); err == nil {
		t.Fatal("cancelled run reported success")
	}
	if _, err := os.Stat(ckpt); err != nil {
		t.Fatalf("no checkpoint after the first epoch: %v", err)
	}
	second := cfg
	second.Checkpoint = ckpt
	resumed, err := Run(context.Background(), second, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(resumed.History) != 2 {
		t.Fatalf("resumed history has %d epochs, want 2", len(resumed.History))
	}
	// Dropout draws from a generator that is not checkpointed, so weights
	// match an unbroken run closely but not bit for bit.
	a, b := paramsOf(full.Net), paramsOf(resumed.Net)
	var diff, norm float64
	for i := range a {
		diff += float64((a[i] - b[i]) * (a[i] - b[i]))
		norm += float64(a[i] * a[i])
	}
	if diff > 1e-2*norm {
		t.Errorf("resumed weights differ from an unbroken run by %.3g of their norm", diff/norm)
	}

	wrong := cfg
	wrong.Checkpoint = ckpt
	wrong.Seed = 4
	if _, err := Run(context.Background(), wrong, d); err == nil {
		t.Error("resuming with another seed was accepted")
	}
}

func paramsOf(net *nn.Sequential) []float32 {
	var v []float32
	for _, p := range net.Params() {
		v = append(v, p.Value...)
	}
	return v
}

// cancelAfterEpochs is a progress writer that cancels the run once it has
// printed n end-of-epoch lines.
type epochCounter struct {
	cancel func()
	n      int
}

func cancelAfterEpochs(cancel func(), n int) *epochCounter { return &epochCounter{cancel, n} }

func (e *epochCounter) Write(p []byte) (int, error) {
	if len(p) > 6 && string(p[:6]) == "epoch " && p[len(p)-1] == '\n' {
		e.n--
		if e.n == 0 {
			e.cancel()
		}
	}
	return len(p), nil
}
