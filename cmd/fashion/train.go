package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/atomicfile"
	"github.com/fashion-classifier/fashion/internal/chart"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/imagefolder"
	"github.com/fashion-classifier/fashion/internal/imageprep"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/train"
)

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("train", stderr)
	var cfg train.Config
	dataFlag := fs.String("data", "", "Fashion-MNIST directory (default: $FASHION_DATA, ./data/fashion-mnist, /usr/share/datasets/fashion-mnist)")
	recipeName := fs.String("recipe", "", "a named set of defaults for the other flags: "+strings.Join(recipeNames(), ", ")+" (flags given explicitly win)")
	fs.StringVar(&cfg.Arch, "arch", "vgg", "architecture: "+strings.Join(arch.Names(), ", "))
	fs.IntVar(&cfg.Epochs, "epochs", 30, "passes over the training images")
	fs.IntVar(&cfg.BatchSize, "batch", 128, "batch size")
	lr := fs.Float64("lr", 0, "peak learning rate (default 0.1 for sgd, 0.002 for adamw)")
	fs.StringVar(&cfg.Optimizer, "opt", "sgd", "optimizer: sgd (Nesterov momentum 0.9) or adamw")
	fs.StringVar(&cfg.Schedule, "schedule", "onecycle", "learning-rate schedule: onecycle or cosine")
	wd := fs.Float64("wd", 0, "weight decay (default 5e-4 for sgd, 0.05 for adamw)")
	smoothing := fs.Float64("smoothing", 0.1, "label smoothing")
	fs.IntVar(&cfg.Augment.Pad, "pad", 2, "random shifts of up to ±pad pixels (0: none)")
	fs.BoolVar(&cfg.Augment.Flip, "flip", true, "random horizontal flips")
	fs.Float64Var(&cfg.Augment.EraseProb, "erase", 0, "random-erasing probability")
	ema := fs.Float64("ema", 0, "per-step decay of a moving average of the weights, which is then evaluated and written (0: none; e.g. 0.999)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed (initial weights, shuffling, augmentation)")
	out := fs.String("out", "model.safetensors", "where to write the trained model")
	fs.StringVar(&cfg.Storage, "storage", modelfile.StorageF32, "how the model file stores the weights: f32, or f16 (IEEE half precision: half the bytes; the recorded test accuracy is the rounded weights'; checkpoints stay f32)")
	ckpt := fs.String("checkpoint", "", "checkpoint file, rewritten after every epoch and resumed from if present (default: <out>.ckpt)")
	curves := fs.String("curves", "", "training-curve PNG (default: <out without extension>-curves.png)")
	threads := fs.Int("threads", runtime.NumCPU(), "CPU threads to use")
	fs.IntVar(&cfg.TrainLimit, "train-limit", 0, "train on only the first N training images (0: all)")
	fs.IntVar(&cfg.TestLimit, "test-limit", 0, "evaluate on only the first N test images (0: all)")
	quiet := fs.Bool("quiet", false, "no progress bar (per-epoch lines are still printed)")
	initPath := fs.String("init", "", "start from this model file's weights and classes and, unless -arch is given, its architecture (fine-tuning) instead of random weights")
	photos := fs.String("photos", "", "also train on this ImageFolder-style directory of photos (one folder per label, converted as predict converts)")
	mapping := fs.String("mapping", "", "the photo folders' mapping file (MAPPING.tsv format; default: MAPPING.tsv in -photos' parent)")
	photoCache := fs.String("photo-cache", "", "cache of the converted -photos (read if it matches, else written)")
	teachers := fs.String("teacher", "", "distil these comma-separated model files (ours or ONNX; their probabilities averaged) into the new model: soft targets computed once for every training image and its mirror image")
	distill := fs.Float64("distill", 0.7, "with -teacher: the teacher's share of the training target (the label's is the rest)")
	var mix imagefolder.MixConfig
	fs.Float64Var(&mix.Ratio, "photo-ratio", 0.3, "share of photo copies among the training images (with -photos)")
	fs.Float64Var(&mix.ConvertProb, "convert-prob", 0.3, "with -photos: probability that a Fashion-MNIST image is made to look like a converted photo (smaller, off-centre, low contrast, residual background, blur)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := applyRecipe(fs, *recipeName); err != nil {
		return err
	}
	if *teachers != "" && (*distill <= 0 || *distill > 1) {
		return fmt.Errorf("-distill must be in (0, 1], got %v", *distill)
	}
	if *teachers != "" && *photos != "" {
		return errors.New("-teacher and -photos cannot be combined: the teacher's targets are for Fashion-MNIST images only")
	}
	if _, err := modelfile.ParseStorage(cfg.Storage); err != nil {
		return fmt.Errorf("-storage: %w", err) // before the dataset is loaded
	}
	cfg.LR, cfg.WeightDecay, cfg.Smoothing, cfg.EMA = float32(*lr), float32(*wd), float32(*smoothing), float32(*ema)
	runtime.GOMAXPROCS(max(1, *threads))
	cfg.Checkpoint = *ckpt
	if cfg.Checkpoint == "" {
		cfg.Checkpoint = *out + ".ckpt"
	}
	if *curves == "" {
		*curves = strings.TrimSuffix(*out, ".safetensors") + "-curves.png"
	}
	cfg.Command = "fashion train " + strings.Join(args, " ")
	cfg.Log = stderr
	if !*quiet {
		cfg.Progress = stderr
	}
	dir, err := idx.FindDir(*dataFlag, os.Getenv)
	if err != nil {
		return err
	}
	data, err := idx.Load(dir)
	if err != nil {
		return err
	}
	if *initPath != "" {
		p, err := predictor.Open(ctx, *initPath, predictor.Options{})
		if err != nil {
			return fmt.Errorf("-init: %w", err)
		}
		c, ok := p.(*modelfile.Classifier)
		if !ok {
			return fmt.Errorf("-init %s is an ONNX model; training starts from one of ours", *initPath)
		}
		d := c.Decoded()
		if err := d.NeedsFloat32(); err != nil {
			return fmt.Errorf("-init %s: %w", *initPath, err)
		}
		// The architecture comes from the file unless -arch names another.
		switch {
		case !flagGiven(fs, "arch"):
			cfg.Arch = d.Meta.Arch
		case d.Meta.Arch != cfg.Arch:
			return fmt.Errorf("-init %s is a %q model, not -arch %s", *initPath, d.Meta.Arch, cfg.Arch)
		}
		cfg.Init, cfg.Classes, cfg.InitClasses = d.Weights, d.Meta.Classes, len(d.Meta.Classes)
	}
	if *photos != "" {
		if *mapping == "" {
			*mapping = mappingBeside(*photos)
		}
		classes := cfg.ClassNames()
		m, err := imagefolder.ReadMappingFile(*mapping, classes)
		if err != nil {
			return err
		}
		if extra := m.Classes[len(classes):]; len(extra) > 0 && cfg.Init != nil {
			// The new classes get fresh classifier outputs; the rest of
			// the network and the old classes' outputs start from -init.
			fmt.Fprintf(stderr, "%s adds classes %q to the %d of %s\n", *mapping, extra, len(classes), *initPath)
		}
		set, err := imagefolder.LoadCached(ctx, *photos, m, imageprep.Limits{}, *photoCache)
		if err != nil {
			return err
		}
		train := data.Train.Head(cfg.TrainLimit)
		cfg.TrainLimit = 0
		mix.Seed = cfg.Seed
		data.Train, cfg.LabelSets, err = imagefolder.Mix(train, set, mix)
		if err != nil {
			return err
		}
		cfg.Classes = m.Classes
		fmt.Fprintf(stderr, "mixed %d photos from %s (%d copies) with %d Fashion-MNIST images\n", set.Len(), *photos, data.Train.Images.N-train.Images.N, train.Images.N)
	}
	if *teachers != "" {
		if cfg.Teacher, err = teacherTargets(ctx, strings.Split(*teachers, ","), data.Train.Head(cfg.TrainLimit), cfg.ClassNames(), float32(*distill), stderr); err != nil {
			return err
		}
	}
	n := data.Train.Images.N
	if cfg.TrainLimit > 0 {
		n = min(n, cfg.TrainLimit)
	}
	fmt.Fprintf(stderr, "training %s on %d images from %s with %d threads\n", cfg.Arch, n, dir, runtime.GOMAXPROCS(0))
	res, err := train.Run(ctx, cfg, data)
	var stopped *train.Interrupted
	if errors.As(err, &stopped) && stopped.Checkpoint != "" {
		return fmt.Errorf("%w; to resume, run the same command again: fashion train %s", err, strings.Join(args, " "))
	}
	if err != nil {
		return err
	}
	if err := modelfile.Save(*out, res.Net, res.Meta); err != nil {
		return err
	}
	if err := atomicfile.Write(*curves, func(w io.Writer) error {
		return chart.CurvesPNG(w, chartEpochs(res.History), fmt.Sprintf("%s, %d epochs, seed %d", cfg.Arch, cfg.Epochs, cfg.Seed))
	}); err != nil {
		return err
	}
	os.Remove(cfg.Checkpoint) // the finished model supersedes it
	fmt.Fprintf(stdout, "wrote %s (test accuracy %.4f, training time %s) and %s\n", *out, res.Meta.TestAccuracy, res.Elapsed.Round(1e9), *curves)
	if len(res.Segments) > 1 {
		for _, sg := range res.Segments {
			fmt.Fprintf(stdout, "  epochs %d–%d: started %s, %s, on %s\n", sg.FirstEpoch, sg.LastEpoch,
				sg.Started.Format(time.RFC3339), time.Duration(sg.WallSeconds*float64(time.Second)).Round(time.Second), sg.Machine)
		}
	}
	return nil
}

// flagGiven reports whether the flag name was set on fs's command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// recipes are named defaults for train's flags, applied to the flags not
// given on the command line.
var recipes = map[string]map[string]string{
	// fast is the short schedule of model/README.md, "The fast recipe":
	// 0.9275 in 9 min 19 s on a 2-core AVX2 EPYC (PyTorch 1.13: 17 min 11 s),
	// and with -epochs 13 0.9338 in 7 min on a 2-core AVX-512 Xeon, both
	// still short of issue 12's 0.940.
	"fast": {"arch": "vgg", "epochs": "8", "batch": "256", "lr": "0.2", "schedule": "onecycle", "smoothing": "0.1", "ema": "0.99", "pad": "2", "flip": "true"},
}

func recipeNames() []string { return slices.Sorted(maps.Keys(recipes)) }

// applyRecipe sets the flags of fs not given explicitly to the recipe's
// values; an empty name changes nothing.
func applyRecipe(fs *flag.FlagSet, name string) error {
	if name == "" {
		return nil
	}
	r, ok := recipes[name]
	if !ok {
		return fmt.Errorf("unknown recipe %q (known: %s)", name, strings.Join(recipeNames(), ", "))
	}
	for flagName, v := range r {
		if !flagGiven(fs, flagName) {
			if err := fs.Set(flagName, v); err != nil {
				return fmt.Errorf("recipe %s: -%s %s: %w", name, flagName, v, err)
			}
		}
	}
	return nil
}

// chartEpochs converts the training history for the curves chart.
func chartEpochs(h []train.EpochStats) []chart.Epoch {
	out := make([]chart.Epoch, len(h))
	for i, e := range h {
		out[i] = chart.Epoch{Epoch: e.Epoch, TrainLoss: e.TrainLoss, TrainAcc: e.TrainAcc, TestAcc: e.TestAcc, LR: e.LR}
	}
	return out
}
