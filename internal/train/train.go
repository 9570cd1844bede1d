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
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/infer"
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
	// EMA is the per-step decay of an exponential moving average of the
	// weights (0: none). When set, the average is what is evaluated after
	// each epoch and returned.
	EMA  float32
	Seed uint64

	// Classes names the classes (default modelfile.FashionClasses); labels
	// at or above len(Classes) stand for LabelSets (nn.CrossEntropy.Sets).
	Classes   []string
	LabelSets [][]int
	// Init, when set, holds the starting weights (fine-tuning an existing
	// model) instead of a random initialisation. InitClasses is the number
	// of classes of that model (0: as many as Classes); when Classes has
	// more, the classifier's outputs for the new classes start from a
	// fresh initialisation and the old ones from Init
	// (modelfile.LoadInit).
	Init        map[string][]float32
	InitClasses int

	// Teacher, when set, distils earlier models into this one: see Teacher.
	Teacher *Teacher

	// Storage is how the model file will store the weights (see
	// modelfile.ParseStorage). For modelfile.StorageF16 the returned
	// network's weights are rounded to half precision after the last
	// epoch, and the test accuracy recorded is that of the rounded
	// weights, the file's.
	Storage string

	TrainLimit int // use only the first TrainLimit training images (0: all)
	TestLimit  int // evaluate on the first TestLimit test images (0: all)

	// Checkpoint, when set, is rewritten atomically after every epoch; if
	// it exists when training starts, training resumes from it.
	Checkpoint string
	Command    string    // recorded in the model's metadata
	Progress   io.Writer // the progress bar; nil for none
	Log        io.Writer // per-epoch results and notices such as resuming; nil for none
}

// Teacher is the soft targets of knowledge distillation (Hinton et al.
// 2015; nn.CrossEntropy.Distill): the probabilities earlier models give
// each training image, as it is and mirrored, computed once before
// training. An augmented image takes the row of its own orientation; its
// shift and erasing are not seen by the teacher, which keeps the cost of
// distilling to that one pass (measured: 2 min for three models against
// 1 h 40 min of training) instead of a teacher pass per step.
type Teacher struct {
	// Plain and Mirrored are training images (the first TrainLimit, when
	// set) × classes probabilities, row-major, each row summing to 1.
	Plain, Mirrored []float32
	// Weight is the teacher's share of the target, in (0, 1].
	Weight float32
	// Source names the models (it is recorded with the recipe, so a
	// checkpoint does not resume under another teacher).
	Source string
}

// ClassNames is Classes, or modelfile.FashionClasses when it is not set.
func (c Config) ClassNames() []string {
	if c.Classes == nil {
		return modelfile.FashionClasses
	}
	return c.Classes
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
	TestAcc   float64 `json:"TestAcc"`   // test accuracy after the epoch of the weights returned: the moving average when Config.EMA is set
	LR        float64 `json:"LR"`        // learning rate at the epoch's last step
	// RawTestAcc is, when Config.EMA is set, the test accuracy of the last
	// step's weights.
	RawTestAcc float64 `json:"RawTestAcc,omitempty"`
}

// Result is a trained network with its training history.
type Result struct {
	Net     *nn.Sequential // with the averaged weights when Config.EMA is set
	Meta    modelfile.Meta
	History []EpochStats
	// Segments are the runs that trained the network: one, or more when
	// training resumed from a checkpoint.
	Segments []Segment
	Elapsed  time.Duration // training time of all segments
}

// Segment is one uninterrupted run of training: when it started, which
// epochs it trained, how long it took and on what machine.
type Segment struct {
	Started     time.Time
	FirstEpoch  int // 1-based, inclusive
	LastEpoch   int
	WallSeconds float64
	Machine     string // GOOS/GOARCH, CPU model, threads
}

// Interrupted is the error of a run stopped by its context. Checkpoint,
// when not empty, holds the Epoch completed epochs of Epochs.
type Interrupted struct {
	Checkpoint    string
	Epoch, Epochs int
	Err           error
}

func (e *Interrupted) Error() string {
	if e.Checkpoint == "" || e.Epoch == 0 {
		return fmt.Sprintf("training stopped (%v) before any checkpoint was written", e.Err)
	}
	return fmt.Sprintf("training stopped (%v); checkpoint %s keeps epoch %d of %d", e.Err, e.Checkpoint, e.Epoch, e.Epochs)
}

func (e *Interrupted) Unwrap() error { return e.Err }

// Run trains a network on data according to cfg. It stops early, returning
// an *Interrupted wrapping ctx's error, when ctx is cancelled; the last
// checkpoint then holds the last completed epoch.
func Run(ctx context.Context, cfg Config, data *idx.Dataset) (*Result, error) {
	cfg.defaults()
	a, err := arch.LookupArch(cfg.Arch)
	if err != nil {
		return nil, err
	}
	if cfg.Epochs < 1 {
		return nil, fmt.Errorf("epochs must be at least 1, got %d", cfg.Epochs)
	}
	if cfg.EMA < 0 || cfg.EMA >= 1 {
		return nil, fmt.Errorf("EMA decay must be in [0, 1), got %v", cfg.EMA)
	}
	storage, err := modelfile.ParseStorage(cfg.Storage)
	if err != nil {
		return nil, err
	}
	trainSet, testSet := data.Train.Head(cfg.TrainLimit), data.Test.Head(cfg.TestLimit)
	if trainSet.Images.N < cfg.BatchSize {
		return nil, fmt.Errorf("%d training images is less than one batch of %d", trainSet.Images.N, cfg.BatchSize)
	}
	side := trainSet.Images.Rows
	if side != modelfile.Side || trainSet.Images.Cols != modelfile.Side {
		return nil, fmt.Errorf("training images are %d×%d, the models take %d×%d", side, trainSet.Images.Cols, modelfile.Side, modelfile.Side)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	classes := cfg.ClassNames()
	net := a.Build(rng, len(classes))
	if cfg.Init != nil {
		oldK := cfg.InitClasses
		if oldK == 0 {
			oldK = len(classes)
		}
		if err := modelfile.LoadInit(net, cfg.Init, oldK, len(classes)); err != nil {
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
	var ema *optim.EMA
	evalNet := net
	if cfg.EMA > 0 {
		ema = optim.NewEMA(cfg.EMA)
		// A second network holds the average for evaluation; its own
		// generator keeps the training network's initialisation unchanged.
		evalNet = a.Build(rand.New(rand.NewPCG(cfg.Seed, 0xe3a)), len(classes))
	}
	var soft []float32 // the batch's teacher rows
	var weight float32
	if t := cfg.Teacher; t != nil {
		if want := trainSet.Images.N * len(classes); len(t.Plain) != want || len(t.Mirrored) != want {
			return nil, fmt.Errorf("teacher: %d and %d probabilities for %d training images of %d classes", len(t.Plain), len(t.Mirrored), trainSet.Images.N, len(classes))
		}
		if t.Weight <= 0 || t.Weight > 1 {
			return nil, fmt.Errorf("teacher weight must be in (0, 1], got %v", t.Weight)
		}
		soft, weight = make([]float32, cfg.BatchSize*len(classes)), t.Weight
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

	res := &Result{Net: evalNet, Meta: meta}
	start := 0
	var earlier time.Duration
	if cfg.Checkpoint != "" {
		var ck *checkpoint
		ck, err = resume(cfg.Checkpoint, cfg, params, opt, ema)
		if err != nil {
			return nil, err
		}
		if ck != nil {
			start, res.History, res.Segments = ck.epoch, ck.history, ck.segments
			for _, sg := range ck.segments {
				earlier += time.Duration(sg.WallSeconds * float64(time.Second))
			}
			progressf(cfg.Log, "resuming from %s after epoch %d of %d (%s of training so far)\n", cfg.Checkpoint, start, cfg.Epochs, earlier.Round(time.Second))
		}
	}
	seg := Segment{Started: time.Now().UTC(), FirstEpoch: start + 1, Machine: machine()}

	// accuracy measures n on the test set through the compiled inference
	// program, as the written file will be served (batch norm folded): the
	// training layers would keep activation buffers for the evaluation
	// batch, which took MobileNetV3-small-28's training to 6.6 GB.
	accuracy := func(n *nn.Sequential) (float64, error) {
		prog, err := infer.Compile(n, side, side, 1)
		if err != nil {
			return 0, fmt.Errorf("train: compiling the network to evaluate it: %w", err)
		}
		conf, err := Evaluate(infer.NewPredictor(prog).Logits, info, testSet, meta.Classes)
		if err != nil {
			return 0, fmt.Errorf("train: evaluating: %w", err)
		}
		return conf.Report().Accuracy, nil
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
				if bar != nil {
					bar.Exit()
				}
				ir := &Interrupted{Epoch: epoch, Epochs: cfg.Epochs, Err: err}
				if epoch > 0 {
					ir.Checkpoint = cfg.Checkpoint
				}
				return nil, ir
			}
			for i := range bs {
				j := perm[step*bs+i]
				flipped := cfg.Augment.apply(erng, pix[i*side*side:(i+1)*side*side], trainSet.Images.Image(j), side)
				labels[i] = trainSet.Labels[j]
				if soft != nil {
					k := len(classes)
					src := cfg.Teacher.Plain
					if flipped {
						src = cfg.Teacher.Mirrored
					}
					copy(soft[i*k:(i+1)*k], src[j*k:(j+1)*k])
				}
			}
			info.Normalize(x.Data, pix)
			logits := net.Forward(x, true)
			loss, grad, ok := ce.Distill(logits, labels, soft, weight)
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return nil, fmt.Errorf("epoch %d step %d: loss is %v; lower the learning rate (-lr)", epoch+1, step+1, loss)
			}
			net.Backward(grad)
			opt.Step(params, sched.LR(epoch*stepsPerEpoch+step))
			if ema != nil {
				ema.Update(params)
			}
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
		trainTime := time.Since(t0)
		ep := EpochStats{Epoch: epoch + 1, TrainLoss: lossSum / float64(seen), TrainAcc: float64(correct) / float64(seen),
			LR: float64(sched.LR((epoch+1)*stepsPerEpoch - 1))}
		if ep.TestAcc, err = accuracy(net); err != nil {
			return nil, err
		}
		emaNote := ""
		if ema != nil {
			ema.CopyTo(evalNet.Params())
			ep.RawTestAcc = ep.TestAcc
			if ep.TestAcc, err = accuracy(evalNet); err != nil {
				return nil, err
			}
			emaNote = fmt.Sprintf(" (last step's weights %.4f)", ep.RawTestAcc)
		}
		res.History = append(res.History, ep)
		progressf(cfg.Log, "epoch %d/%d: train loss %.4f, train acc %.4f, test acc %.4f%s (%d images), %.0f img/s, %s\n",
			epoch+1, cfg.Epochs, ep.TrainLoss, ep.TrainAcc, ep.TestAcc, emaNote, testSet.Images.N, float64(seen)/trainTime.Seconds(), trainTime.Round(time.Second))
		seg.LastEpoch, seg.WallSeconds = epoch+1, time.Since(began).Seconds()
		if cfg.Checkpoint != "" {
			ck := &checkpoint{epoch: epoch + 1, history: res.History, segments: append(slices.Clip(res.Segments), seg)}
			if err := saveCheckpoint(cfg.Checkpoint, cfg, net, meta, opt, ema, params, ck); err != nil {
				return nil, err
			}
		}
	}
	seg.LastEpoch, seg.WallSeconds = cfg.Epochs, time.Since(began).Seconds()
	res.Segments = append(res.Segments, seg)
	res.Elapsed = earlier + time.Since(began)
	if n := len(res.History); n > 0 {
		res.Meta.TestAccuracy = res.History[n-1].TestAcc
	}
	if storage == modelfile.StorageF16 {
		for _, p := range res.Net.Params() {
			for i, v := range p.Value {
				p.Value[i] = safetensors.RoundF16(v)
			}
		}
		res.Meta.Storage = storage
		full := res.Meta.TestAccuracy
		if res.Meta.TestAccuracy, err = accuracy(res.Net); err != nil {
			return nil, err
		}
		progressf(cfg.Log, "weights rounded to %s for storage: test acc %.4f (float32 weights %.4f, %d images)\n", storage, res.Meta.TestAccuracy, full, testSet.Images.N)
	}
	return res, nil
}

// machine describes the computer training runs on, for the record of
// segments: OS, architecture, CPU model and thread count.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%s, %s, %d threads, host %s", runtime.GOOS, runtime.GOARCH, cpu, runtime.GOMAXPROCS(0), host)
}

// Evaluate runs forward (which maps n normalised images to n×classes
// scores) over set in batches and returns the confusion matrix, or
// forward's first error.
func Evaluate(forward func(x []float32, n int) ([]float32, error), info modelfile.Info, set idx.Set, classes []string) (*eval.Confusion, error) {
	const batch = 500
	conf := eval.NewConfusion(classes)
	px := set.Images.Rows * set.Images.Cols
	x := make([]float32, batch*px)
	k := len(classes)
	for n0 := 0; n0 < set.Images.N; n0 += batch {
		n1 := min(n0+batch, set.Images.N)
		info.Normalize(x[:(n1-n0)*px], set.Images.Pix[n0*px:n1*px])
		scores, err := forward(x[:(n1-n0)*px], n1-n0)
		if err != nil {
			return nil, err
		}
		for i := n0; i < n1; i++ {
			conf.Add(int(set.Labels[i]), eval.Argmax(scores[(i-n0)*k:(i-n0+1)*k]))
		}
	}
	return conf, nil
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

// Checkpoints are model files with extra content: the optimiser's slots
// as tensors named "optim/…", the weight average's as "ema/…", and in the
// metadata the completed epoch, the history, the segments so far and the
// recipe, so that a resumed run can refuse a changed one.
const (
	optimPrefix = "optim/"
	emaPrefix   = "ema/"
)

// checkpoint is the training state beside the weights.
type checkpoint struct {
	epoch    int
	history  []EpochStats
	segments []Segment
}

// recipe is what must not change between the segments of one run, with
// the flag of `fashion train` that sets each field.
type recipe struct {
	Arch        string  `flag:"arch"`
	Epochs      int     `flag:"epochs"`
	BatchSize   int     `flag:"batch"`
	LR          float32 `flag:"lr"`
	Optimizer   string  `flag:"opt"`
	Schedule    string  `flag:"schedule"`
	WeightDecay float32 `flag:"wd"`
	Smoothing   float32 `flag:"smoothing"`
	Pad         int     `flag:"pad"`
	Flip        bool    `flag:"flip"`
	EraseProb   float64 `flag:"erase"`
	EMA         float32 `flag:"ema"`
	Seed        uint64  `flag:"seed"`
	TrainLimit  int     `flag:"train-limit"`
	Teacher     string  `flag:"teacher"`
	Distill     float32 `flag:"distill"`
}

func recipeOf(c Config) recipe {
	sched := c.Schedule
	if sched == "" {
		sched = "onecycle"
	}
	r := recipe{c.Arch, c.Epochs, c.BatchSize, c.LR, c.Optimizer, sched, c.WeightDecay, c.Smoothing,
		c.Augment.Pad, c.Augment.Flip, c.Augment.EraseProb, c.EMA, c.Seed, c.TrainLimit, "", 0}
	if c.Teacher != nil {
		r.Teacher, r.Distill = c.Teacher.Source, c.Teacher.Weight
	}
	return r
}

// differences lists the fields in which want differs from got as
// "-flag was X, now Y".
func (got recipe) differences(want recipe) []string {
	var out []string
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range g.NumField() {
		if a, b := fmt.Sprint(g.Field(i)), fmt.Sprint(w.Field(i)); a != b {
			out = append(out, fmt.Sprintf("-%s was %s, now %s", g.Type().Field(i).Tag.Get("flag"), a, b))
		}
	}
	return out
}

func saveCheckpoint(path string, cfg Config, net *nn.Sequential, meta modelfile.Meta, opt optim.Optimizer, ema *optim.EMA, params []*nn.Param, ck *checkpoint) error {
	f := modelfile.Encode(net, meta)
	for name, v := range opt.State(params) {
		f.Tensors = append(f.Tensors, safetensors.Tensor{Name: optimPrefix + name, Shape: []int{len(v)}, Data: v})
	}
	if ema != nil {
		for name, v := range ema.State(params) {
			f.Tensors = append(f.Tensors, safetensors.Tensor{Name: emaPrefix + name, Shape: []int{len(v)}, Data: v})
		}
	}
	for key, v := range map[string]any{"history": ck.history, "segments": ck.segments, "recipe": recipeOf(cfg)} {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		f.Metadata[key] = string(b)
	}
	f.Metadata["checkpoint_epoch"] = strconv.Itoa(ck.epoch)
	if err := safetensors.WriteFile(path, f); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	return nil
}

// resume restores params, the optimiser and the average from the
// checkpoint at path; a missing file means a fresh start (nil, nil).
func resume(path string, cfg Config, params []*nn.Param, opt optim.Optimizer, ema *optim.EMA) (*checkpoint, error) {
	f, err := safetensors.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w (delete it to start afresh)", err)
	}
	afresh := fmt.Sprintf("resume with the flags it was made with, or delete %s (or name another -checkpoint) to start afresh", path)
	if s, ok := f.Metadata["recipe"]; ok {
		var was recipe
		if err := json.Unmarshal([]byte(s), &was); err != nil {
			return nil, fmt.Errorf("checkpoint %s: bad recipe: %w", path, err)
		}
		if d := was.differences(recipeOf(cfg)); len(d) > 0 {
			return nil, fmt.Errorf("checkpoint %s was made with another recipe (%s): %s", path, strings.Join(d, "; "), afresh)
		}
	} else if f.Metadata["arch"] != cfg.Arch || f.Metadata["seed"] != strconv.FormatUint(cfg.Seed, 10) || f.Metadata["epochs"] != strconv.Itoa(cfg.Epochs) {
		// Checkpoints from before the recipe was recorded.
		return nil, fmt.Errorf("checkpoint %s was made with -arch %s -seed %s -epochs %s: %s", path, f.Metadata["arch"], f.Metadata["seed"], f.Metadata["epochs"], afresh)
	}
	ck := &checkpoint{}
	if ck.epoch, err = strconv.Atoi(f.Metadata["checkpoint_epoch"]); err != nil {
		return nil, fmt.Errorf("checkpoint %s has no epoch count", path)
	}
	if err := json.Unmarshal([]byte(f.Metadata["history"]), &ck.history); err != nil {
		return nil, fmt.Errorf("checkpoint %s: bad history: %w", path, err)
	}
	if s, ok := f.Metadata["segments"]; ok {
		if err := json.Unmarshal([]byte(s), &ck.segments); err != nil {
			return nil, fmt.Errorf("checkpoint %s: bad segments: %w", path, err)
		}
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
			return nil, err
		}
	}
	for name, slot := range opt.State(params) {
		if err := restore(optimPrefix+name, slot); err != nil {
			return nil, err
		}
	}
	if a, ok := opt.(*optim.AdamW); ok {
		if t, ok := f.Lookup(optimPrefix + "adam.t"); ok && len(t.Data) == 1 {
			a.SetStep(int(t.Data[0]))
		}
	}
	if ema != nil {
		for name, slot := range ema.State(params) {
			if err := restore(emaPrefix+name, slot); err != nil {
				return nil, err
			}
		}
		if t, ok := f.Lookup(emaPrefix + "ema.steps"); ok && len(t.Data) == 1 {
			ema.SetSteps(int(t.Data[0]))
		}
	}
	return ck, nil
}
