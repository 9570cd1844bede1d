// Package train trains the classifier: the loop over epochs and batches,
// data augmentation, checkpoints that survive a killed process, and
// evaluation on the test set.
package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/nn"
	"github.com/fashion-classifier/fashion/internal/optim"
	"github.com/fashion-classifier/fashion/internal/safetensors"
)

// Config is a training recipe. The zero value of an optional field takes
// the default documented beside it.
type Config struct {
	Arch        string  // architecture name, see arch.Archs
	Epochs      int     // passes over the training set
	BatchSize   int     // default 128
	LR          float32 // peak learning rate; default 0.1 for SGD, 2e-3 for AdamW
	Optimizer   string  // "sgd" (Nesterov momentum 0.9, default) or "adamw"
	Schedule    string  // "onecycle" (default) or "cosine" (5% linear warm-up)
	WeightDecay float32 // default 5e-4 (SGD) or 5e-2 (AdamW)
	Smoothing   float32 // label smoothing
	Augment     Augment
	Seed        uint64

	// Classes names the classes (default modelfile.FashionClasses); labels
	// at or above len(Classes) stand for LabelSets (nn.CrossEntropy.Sets).
	Classes   []string
	LabelSets [][]int
	// Init, when set, holds the starting weights (fine-tuning an existing
	// model) instead of a random initialisation.
	Init map[string][]float32

	TrainLimit int // use only the first TrainLimit training images (0: all)
	TestLimit  int // evaluate on the first TestLimit test images (0: all)

	// Checkpoint, when set, is rewritten atomically after every epoch; if
	// it exists when training starts, training resumes from it.
	Checkpoint string
	Command    string    // recorded in the model's metadata
	Progress   io.Writer // the progress bar; nil for none
	Log        io.Writer // per-epoch results and notices such as resuming; nil for none
}

func (c *Config) defaults() {
	if c.BatchSize == 0 {
		c.BatchSize = 128
	}
	if c.Optimizer == "" {
		c.Optimizer = "sgd"
	}
	if c.LR == 0 {
		c.LR = 0.1
		if c.Optimizer == "adamw" {
			c.LR = 2e-3
		}
	}
	if c.WeightDecay == 0 {
		c.WeightDecay = 5e-4
		if c.Optimizer == "adamw" {
			c.WeightDecay = 5e-2
		}
	}
}

// EpochStats is one completed epoch as training records it, in Result and
// in checkpoints. It is this package's own record, with its JSON names
// fixed (the names checkpoints have always used), so a change to the
// plotting code (internal/chart) cannot break resuming from a checkpoint.
type EpochStats struct {
	Epoch     int     `json:"Epoch"`     // 1-based
	TrainLoss float64 `json:"TrainLoss"` // mean training loss over the epoch
	TrainAcc  float64 `json:"TrainAcc"`  // training accuracy over the epoch (augmented images)
	TestAcc   float64 `json:"TestAcc"`   // test accuracy after the epoch
	LR        float64 `json:"LR"`        // learning rate at the epoch's last step
}

// Result is a trained network with its training history.
type Result struct {
	Net     *nn.Sequential
	Meta    modelfile.Meta
	History []EpochStats
	Elapsed time.Duration // training time of this run (not of earlier, resumed runs)
}

// Run trains a network on data according to cfg. It stops early, returning
// ctx's error, when ctx is cancelled; the last checkpoint then holds the
// last completed epoch.
func Run(ctx context.Context, cfg Config, data *idx.Dataset) (*Result, error) {
	cfg.defaults()
	a, err := arch.LookupArch(cfg.Arch)
	if err != nil {
		return nil, err
	}
	if cfg.Epochs < 1 {
		return nil, fmt.Errorf("epochs must be at least 1, got %d", cfg.Epochs)
	}
	trainSet, testSet := limit(data.Train, cfg.TrainLimit), limit(data.Test, cfg.TestLimit)
	if trainSet.Images.N < cfg.BatchSize {
		return nil, fmt.Errorf("%d training images is less than one batch of %d", trainSet.Images.N, cfg.BatchSize)
	}
	side := trainSet.Images.Rows
	if side != modelfile.Side || trainSet.Images.Cols != modelfile.Side {
		return nil, fmt.Errorf("training images are %d×%d, the models take %d×%d", side, trainSet.Images.Cols, modelfile.Side, modelfile.Side)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	classes := cfg.Classes
	if classes == nil {
		classes = modelfile.FashionClasses
	}
	net := a.Build(rng, len(classes))
	if cfg.Init != nil {
		if err := modelfile.Load(net, cfg.Init); err != nil {
			return nil, fmt.Errorf("initial weights: %w", err)
		}
	}
	params := net.Params()
	var opt optim.Optimizer
	switch cfg.Optimizer {
	case "sgd":
		opt = &optim.SGD{Momentum: 0.9, Nesterov: true, WeightDecay: cfg.WeightDecay}
	case "adamw":
		opt = optim.NewAdamW(cfg.WeightDecay)
	default:
		return nil, fmt.Errorf("unknown optimizer %q (want sgd or adamw)", cfg.Optimizer)
	}
	stepsPerEpoch := trainSet.Images.N / cfg.BatchSize
	var sched optim.Schedule
	switch total := cfg.Epochs * stepsPerEpoch; cfg.Schedule {
	case "", "onecycle":
		sched = optim.OneCycle{Max: cfg.LR, Total: total}
	case "cosine":
		sched = optim.Cosine{Base: cfg.LR, Total: total, Warmup: total / 20}
	default:
		return nil, fmt.Errorf("unknown schedule %q (want onecycle or cosine)", cfg.Schedule)
	}
	meta := modelfile.Meta{Arch: cfg.Arch, Classes: classes, Mean: modelfile.DefaultMean, Std: modelfile.DefaultStd,
		Command: cfg.Command, Seed: cfg.Seed, Epochs: cfg.Epochs}
	info := modelfile.Info{Mean: meta.Mean, Std: meta.Std}

	res := &Result{Net: net, Meta: meta}
	start := 0
	if cfg.Checkpoint != "" {
		start, res.History, err = resume(cfg.Checkpoint, cfg, params, opt)
		if err != nil {
			return nil, err
		}
		if start > 0 {
			progressf(cfg.Log, "resuming from %s after epoch %d of %d\n", cfg.Checkpoint, start, cfg.Epochs)
		}
	}

	ce := &nn.CrossEntropy{Smoothing: cfg.Smoothing, Sets: cfg.LabelSets}
	bs := cfg.BatchSize
	x := nn.NewTensor(bs, side, side, 1)
	pix := make([]uint8, bs*side*side)
	labels := make([]uint8, bs)
	began := time.Now()
	for epoch := start; epoch < cfg.Epochs; epoch++ {
		// Each epoch's shuffling and augmentation depend only on the seed and
		// the epoch, so a resumed run sees the same data as an unbroken one.
		erng := rand.New(rand.NewPCG(cfg.Seed, uint64(epoch)+1))
		perm := erng.Perm(trainSet.Images.N)
		bar := newBar(cfg.Progress, stepsPerEpoch*bs, fmt.Sprintf("epoch %d/%d", epoch+1, cfg.Epochs))
		var lossSum float64
		correct, seen := 0, 0
		t0 := time.Now()
		for step := range stepsPerEpoch {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			for i := range bs {
				j := perm[step*bs+i]
				cfg.Augment.apply(erng, pix[i*side*side:(i+1)*side*side], trainSet.Images.Image(j), side)
				labels[i] = trainSet.Labels[j]
			}
			info.Normalize(x.Data, pix)
			logits := net.Forward(x, true)
			loss, grad, ok := ce.Loss(logits, labels)
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return nil, fmt.Errorf("epoch %d step %d: loss is %v; lower the learning rate (-lr)", epoch+1, step+1, loss)
			}
			net.Backward(grad)
			opt.Step(params, sched.LR(epoch*stepsPerEpoch+step))
			lossSum += loss * float64(bs)
			correct += ok
			seen += bs
			if bar != nil {
				rate := float64(seen) / time.Since(t0).Seconds()
				bar.Describe(fmt.Sprintf("epoch %d/%d  loss %.4f  acc %.2f%%  %.0f img/s", epoch+1, cfg.Epochs, lossSum/float64(seen), 100*float64(correct)/float64(seen), rate))
				bar.Add(bs)
			}
		}
		if bar != nil {
			bar.Finish()
		}
		testConf := Evaluate(func(x []float32, n int) []float32 {
			return net.Forward(&nn.Tensor{N: n, H: side, W: side, C: 1, Data: x}, false).Data
		}, info, testSet, meta.Classes)
		rep := testConf.Report()
		ep := EpochStats{Epoch: epoch + 1, TrainLoss: lossSum / float64(seen), TrainAcc: float64(correct) / float64(seen),
			TestAcc: rep.Accuracy, LR: float64(sched.LR((epoch+1)*stepsPerEpoch - 1))}
		res.History = append(res.History, ep)
		progressf(cfg.Log, "epoch %d/%d: train loss %.4f, train acc %.4f, test acc %.4f (%d images), %.0f img/s, %s\n",
			epoch+1, cfg.Epochs, ep.TrainLoss, ep.TrainAcc, ep.TestAcc, rep.N, float64(seen)/time.Since(t0).Seconds(), time.Since(t0).Round(time.Second))
		if cfg.Checkpoint != "" {
			if err := saveCheckpoint(cfg.Checkpoint, net, meta, opt, params, res.History); err != nil {
				return nil, err
			}
		}
	}
	res.Elapsed = time.Since(began)
	if n := len(res.History); n > 0 {
		res.Meta.TestAccuracy = res.History[n-1].TestAcc
	}
	return res, nil
}

// Evaluate runs forward (which maps n normalised images to n×classes
// scores) over set in batches and returns the confusion matrix.
func Evaluate(forward func(x []float32, n int) []float32, info modelfile.Info, set idx.Set, classes []string) *eval.Confusion {
	const batch = 500
	conf := eval.NewConfusion(classes)
	px := set.Images.Rows * set.Images.Cols
	x := make([]float32, batch*px)
	k := len(classes)
	for n0 := 0; n0 < set.Images.N; n0 += batch {
		n1 := min(n0+batch, set.Images.N)
		info.Normalize(x[:(n1-n0)*px], set.Images.Pix[n0*px:n1*px])
		scores := forward(x[:(n1-n0)*px], n1-n0)
		for i := n0; i < n1; i++ {
			conf.Add(int(set.Labels[i]), eval.Argmax(scores[(i-n0)*k:(i-n0+1)*k]))
		}
	}
	return conf
}

func limit(s idx.Set, n int) idx.Set {
	if n <= 0 || n >= s.Images.N {
		return s
	}
	px := s.Images.Rows * s.Images.Cols
	s.Images.N = n
	s.Images.Pix = s.Images.Pix[:n*px]
	s.Labels = s.Labels[:n]
	return s
}

func newBar(w io.Writer, total int, desc string) *progressbar.ProgressBar {
	if w == nil {
		return nil
	}
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func progressf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}

// Checkpoints are model files with three extra kinds of content: the
// optimiser's slots as tensors named "optim/…", and the completed epoch and
// training history in the metadata.
const optimPrefix = "optim/"

func saveCheckpoint(path string, net *nn.Sequential, meta modelfile.Meta, opt optim.Optimizer, params []*nn.Param, hist []EpochStats) error {
	f := modelfile.Encode(net, meta)
	for name, v := range opt.State(params) {
		f.Tensors = append(f.Tensors, safetensors.Tensor{Name: optimPrefix + name, Shape: []int{len(v)}, Data: v})
	}
	h, err := json.Marshal(hist)
	if err != nil {
		return err
	}
	f.Metadata["checkpoint_epoch"] = strconv.Itoa(len(hist))
	f.Metadata["history"] = string(h)
	if err := safetensors.WriteFile(path, f); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	return nil
}

// resume restores params and the optimiser from the checkpoint at path and
// returns the number of completed epochs; a missing file means a fresh
// start.
func resume(path string, cfg Config, params []*nn.Param, opt optim.Optimizer) (int, []EpochStats, error) {
	f, err := safetensors.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("checkpoint: %w (delete it to start afresh)", err)
	}
	if f.Metadata["arch"] != cfg.Arch {
		return 0, nil, fmt.Errorf("checkpoint %s is for architecture %q, not %q", path, f.Metadata["arch"], cfg.Arch)
	}
	if f.Metadata["seed"] != strconv.FormatUint(cfg.Seed, 10) || f.Metadata["epochs"] != strconv.Itoa(cfg.Epochs) {
		return 0, nil, fmt.Errorf("checkpoint %s was made with seed %s and %s epochs; resume with the same -seed and -epochs, or delete it", path, f.Metadata["seed"], f.Metadata["epochs"])
	}
	epoch, err := strconv.Atoi(f.Metadata["checkpoint_epoch"])
	if err != nil {
		return 0, nil, fmt.Errorf("checkpoint %s has no epoch count", path)
	}
	var hist []EpochStats
	if err := json.Unmarshal([]byte(f.Metadata["history"]), &hist); err != nil {
		return 0, nil, fmt.Errorf("checkpoint %s: bad history: %w", path, err)
	}
	restore := func(name string, dst []float32) error {
		t, ok := f.Lookup(name)
		if !ok || len(t.Data) != len(dst) {
			return fmt.Errorf("checkpoint %s lacks %q of size %d", path, name, len(dst))
		}
		copy(dst, t.Data)
		return nil
	}
	for _, p := range params {
		if err := restore(p.Name, p.Value); err != nil {
			return 0, nil, err
		}
	}
	for name, slot := range opt.State(params) {
		if err := restore(optimPrefix+name, slot); err != nil {
			return 0, nil, err
		}
	}
	if a, ok := opt.(*optim.AdamW); ok {
		if t, ok := f.Lookup(optimPrefix + "adam.t"); ok && len(t.Data) == 1 {
			a.SetStep(int(t.Data[0]))
		}
	}
	return epoch, hist, nil
}
