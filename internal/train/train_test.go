package train

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/nn"
	"github.com/fashion-classifier/fashion/internal/safetensors"
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

	for _, tc := range []struct {
		flag   string
		change func(*Config)
	}{
		{"-seed", func(c *Config) { c.Seed = 4 }},
		{"-lr", func(c *Config) { c.LR = 0.05 }},
		{"-arch", func(c *Config) { c.Arch = "resnet20" }},
		{"-erase", func(c *Config) { c.Augment.EraseProb = 0.5 }},
		{"-teacher", func(c *Config) { c.Teacher = shiftedTeacher(d.Train, 0, 0, 1) }},
	} {
		wrong := cfg
		wrong.Checkpoint = ckpt
		tc.change(&wrong)
		_, err := Run(context.Background(), wrong, d)
		if err == nil {
			t.Errorf("resuming with another %s was accepted", tc.flag)
			continue
		}
		// The message names the flag and how to get going again.
		if msg := err.Error(); !strings.Contains(msg, tc.flag+" was ") || !strings.Contains(msg, "delete") {
			t.Errorf("changed %s: unhelpful error %q", tc.flag, msg)
		}
	}
}

// TestInterruptedRunSaysWhatWasKept checks the error of a cancelled run
// and that the training time of a resumed run counts every segment.
func TestInterruptedRunSaysWhatWasKept(t *testing.T) {
	d := tiny(256)
	ckpt := filepath.Join(t.TempDir(), "run.ckpt")
	cfg := Config{Arch: "vgg", Epochs: 2, BatchSize: 64, Seed: 3, Checkpoint: ckpt}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, cfg, d)
	var stopped *Interrupted
	if !errors.As(err, &stopped) || !errors.Is(err, context.Canceled) || stopped.Checkpoint != "" {
		t.Fatalf("run cancelled before the first epoch: got %v, want an Interrupted with no checkpoint", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	first := cfg
	first.Log = cancelAfterEpochs(cancel, 1)
	_, err = Run(ctx, first, d)
	if !errors.As(err, &stopped) || stopped.Checkpoint != ckpt || stopped.Epoch != 1 || stopped.Epochs != 2 {
		t.Fatalf("run cancelled after epoch 1: got %#v", err)
	}
	if !strings.Contains(err.Error(), ckpt) || !strings.Contains(err.Error(), "epoch 1 of 2") {
		t.Errorf("message %q does not say which checkpoint keeps what", err)
	}
	res, err := Run(context.Background(), cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Segments) != 2 || res.Segments[0].LastEpoch != 1 || res.Segments[1].FirstEpoch != 2 {
		t.Fatalf("segments %+v, want epochs 1–1 and 2–2", res.Segments)
	}
	sum := time.Duration((res.Segments[0].WallSeconds + res.Segments[1].WallSeconds) * float64(time.Second))
	if d := res.Elapsed - sum; d < -time.Millisecond || d > time.Millisecond || res.Segments[0].WallSeconds <= 0 {
		t.Errorf("training time %v, want the sum of both segments %v", res.Elapsed, sum)
	}
}

// TestArchitecturesAndEMALearn trains each architecture briefly on the
// synthetic data, with the weight average on, and checks that the
// returned (averaged) network learned: far above the 10% of guessing.
func TestArchitecturesAndEMALearn(t *testing.T) {
	for _, tc := range []struct {
		arch   string
		images int
		epochs int
		lr     float32
	}{
		{"resnet20", 384, 3, 0.1},
		// Its batch-norm statistics settle more slowly: the running
		// averages lag the batch ones for the first few dozen steps.
		{"mobilenetv3-small-28", 512, 5, 0.05},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			d := tiny(tc.images)
			res, err := Run(context.Background(), Config{Arch: tc.arch, Epochs: tc.epochs, BatchSize: 32, LR: tc.lr, Seed: 5, EMA: 0.9}, d)
			if err != nil {
				t.Fatal(err)
			}
			h := res.History
			for _, e := range h {
				t.Logf("epoch %d: loss %.4f train %.4f test %.4f (last step %.4f)", e.Epoch, e.TrainLoss, e.TrainAcc, e.TestAcc, e.RawTestAcc)
			}
			if acc := res.Meta.TestAccuracy; acc < 0.6 {
				t.Errorf("averaged weights reach %.3f on the synthetic test set, want ≥ 0.6", acc)
			}
			if h[len(h)-1].TrainLoss >= h[0].TrainLoss {
				t.Errorf("training loss did not fall: %v → %v", h[0].TrainLoss, h[len(h)-1].TrainLoss)
			}
			// The returned network is the average, not the last step.
			got := accuracyOf(t, layersForward(res.Net), modelfile.Info{Mean: res.Meta.Mean, Std: res.Meta.Std}, d.Test, res.Meta.Classes)
			if got != res.Meta.TestAccuracy {
				t.Errorf("returned network scores %.4f, the recorded accuracy is %.4f", got, res.Meta.TestAccuracy)
			}
		})
	}
}

// shiftedTeacher is a teacher that is sure of class label+plain for each
// image of s and label+mirrored for its mirror image (mod 10).
func shiftedTeacher(s idx.Set, plain, mirrored int, weight float32) *Teacher {
	t := &Teacher{Plain: make([]float32, s.Images.N*10), Mirrored: make([]float32, s.Images.N*10), Weight: weight,
		Source: fmt.Sprintf("shifted %d/%d", plain, mirrored)}
	for i, l := range s.Labels {
		t.Plain[i*10+(int(l)+plain)%10] = 1
		t.Mirrored[i*10+(int(l)+mirrored)%10] = 1
	}
	return t
}

// TestDistillationFollowsTheTeacher trains on a teacher that contradicts
// the labels: sure of the next class for the plain images and of the one
// after for their mirror images. With the teacher's full weight the
// network must learn the teacher's answers for each orientation, which it
// can only do if each flipped image is given the mirrored row.
func TestDistillationFollowsTheTeacher(t *testing.T) {
	d := tiny(512)
	res, err := Run(context.Background(), Config{Arch: "vgg", Epochs: 4, BatchSize: 32, Seed: 7,
		Augment: Augment{Flip: true}, Teacher: shiftedTeacher(d.Train, 1, 2, 1)}, d)
	if err != nil {
		t.Fatal(err)
	}
	info := modelfile.Info{Mean: res.Meta.Mean, Std: res.Meta.Std}
	forward := layersForward(res.Net)
	shifted := func(s idx.Set, by int) idx.Set {
		out := idx.Set{Images: s.Images, Labels: make([]uint8, len(s.Labels))}
		for i, l := range s.Labels {
			out.Labels[i] = uint8((int(l) + by) % 10)
		}
		return out
	}
	flipped := d.Test
	flipped.Images.Pix = make([]uint8, len(d.Test.Images.Pix))
	for r := 0; r < len(flipped.Images.Pix)/28; r++ {
		for x := range 28 {
			flipped.Images.Pix[r*28+27-x] = d.Test.Images.Pix[r*28+x]
		}
	}
	for _, tc := range []struct {
		name string
		set  idx.Set
	}{
		{"plain images, teacher's class", shifted(d.Test, 1)},
		{"mirror images, teacher's class", shifted(flipped, 2)},
	} {
		if acc := accuracyOf(t, forward, info, tc.set, res.Meta.Classes); acc < 0.8 {
			t.Errorf("%s: accuracy %.3f, want ≥ 0.8", tc.name, acc)
		}
	}
	if _, err := Run(context.Background(), Config{Arch: "vgg", Epochs: 1, BatchSize: 32,
		Teacher: shiftedTeacher(tiny(64).Train, 0, 0, 1)}, d); err == nil || !strings.Contains(err.Error(), "teacher") {
		t.Errorf("a teacher for 64 images of 512 was accepted (error %v)", err)
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

// TestStorageF16 checks Config.Storage: the returned weights are exactly
// what an F16 file stores, and the recorded accuracy is theirs.
func TestStorageF16(t *testing.T) {
	d := tiny(256)
	res, err := Run(context.Background(), Config{Arch: "vgg", Epochs: 1, BatchSize: 32, Seed: 3, Storage: modelfile.StorageF16}, d)
	if err != nil {
		t.Fatal(err)
	}
	if res.Meta.Storage != modelfile.StorageF16 {
		t.Errorf("Meta.Storage = %q, want f16", res.Meta.Storage)
	}
	for _, p := range res.Net.Params() {
		for i, v := range p.Value {
			if safetensors.RoundF16(v) != v {
				t.Fatalf("%s[%d] = %v is not a half-precision value", p.Name, i, v)
			}
		}
	}
	got := accuracyOf(t, layersForward(res.Net), modelfile.Info{Mean: res.Meta.Mean, Std: res.Meta.Std}, d.Test, res.Meta.Classes)
	if got != res.Meta.TestAccuracy {
		t.Errorf("rounded network scores %.4f, the recorded accuracy is %.4f", got, res.Meta.TestAccuracy)
	}
	if _, err := Run(context.Background(), Config{Arch: "vgg", Epochs: 1, Storage: "f8"}, d); err == nil || !strings.Contains(err.Error(), "storage") {
		t.Errorf("Storage f8: %v, want an error about storage", err)
	}
}

// layersForward runs net's training layers in inference mode, for Evaluate.
func layersForward(net *nn.Sequential) func(x []float32, n int) ([]float32, error) {
	return func(x []float32, n int) ([]float32, error) {
		return net.Forward(&nn.Tensor{N: n, H: 28, W: 28, C: 1, Data: x}, false).Data, nil
	}
}

// accuracyOf is Evaluate's accuracy, failing the test on an error.
func accuracyOf(t *testing.T, forward func(x []float32, n int) ([]float32, error), info modelfile.Info, set idx.Set, classes []string) float64 {
	t.Helper()
	conf, err := Evaluate(forward, info, set, classes)
	if err != nil {
		t.Fatal(err)
	}
	return conf.Report().Accuracy
}
