package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/safefile"
	shipped "github.com/fashion-classifier/fashion/model"
)

// modelFlags are the flags that choose a model: -model, and for ONNX files
// (which do not record them) the input normalisation and class names.
type modelFlags struct {
	path      string
	photo     string
	mean, std float64
	classes   string
	tta       bool
}

// addModelFlags registers -model, -mean, -std and -classes on fs.
func addModelFlags(fs *flag.FlagSet) *modelFlags {
	m := &modelFlags{}
	fs.StringVar(&m.path, "model", "", "model `file`: ours (safetensors) or ONNX, told apart by content, answering every input (default: $WEIGHT_PATH, else the two models embedded in the binary, each answering its kind of input)")
	fs.StringVar(&m.photo, "photo-model", "", "photo model `file`: answers the images that are not 28×28 dataset-like ones, while -model (default: the embedded benchmark model) answers those")
	fs.Float64Var(&m.mean, "mean", 0, "ONNX models: input normalisation mean on pixel/255 (default: the model's sidecar JSON, else 0.2860)")
	fs.Float64Var(&m.std, "std", 0, "ONNX models: input normalisation std on pixel/255 (default: the sidecar, else 0.3530)")
	fs.StringVar(&m.classes, "classes", "", "ONNX models: comma-separated class names in class-id order (default: the sidecar, else Fashion-MNIST's)")
	return m
}

// addTTAFlag registers -tta, for the commands that classify (eval,
// predict, serve).
func (m *modelFlags) addTTAFlag(fs *flag.FlagSet) *modelFlags {
	fs.BoolVar(&m.tta, "tta", false, "flip test-time augmentation: average each image's answer with its mirror image's (twice the computation)")
	return m
}

// modelPath is the model file the flags choose: -model, else $WEIGHT_PATH,
// else "" for the embedded model.
func (m *modelFlags) modelPath() string {
	if m.path != "" {
		return m.path
	}
	return os.Getenv("WEIGHT_PATH")
}

// open loads the chosen model through predictor.Open, the one opener of
// every command, wrapped in predictor.FlipTTA under -tta: with no -model
// and no $WEIGHT_PATH, or with -photo-model, a predictor.Routed of a
// benchmark and a photo model. The ONNX flags are refused for our own
// model files, which carry their normalisation and classes, and apply to
// -model only.
func (m *modelFlags) open(ctx context.Context) (predictor.Predictor, error) {
	var opts predictor.Options
	if m.classes != "" {
		opts.Classes = strings.Split(m.classes, ",")
		for i, c := range opts.Classes {
			opts.Classes[i] = strings.TrimSpace(c)
		}
	}
	opts.Mean, opts.Std = float32(m.mean), float32(m.std)
	opts.PhotoPath = m.photo
	if m.std < 0 {
		return nil, fmt.Errorf("-std must be positive, got %v", m.std)
	}
	p, err := predictor.Open(ctx, m.modelPath(), opts)
	if err != nil || !m.tta {
		return p, err
	}
	return predictor.FlipTTA(p), nil
}

// readOwnModel reads and checks one of our model files for the commands
// that write a changed copy of one (quantize, convert): path, a regular
// file within predictor's size cap, or the embedded model when path is "".
// It returns the file's bytes, its decoded form and the name to report it
// by.
func readOwnModel(ctx context.Context, path string) ([]byte, *modelfile.Decoded, string, error) {
	raw, source := shipped.Weights, "embedded"
	if path != "" {
		var err error
		if raw, err = safefile.ReadFile(ctx, path, predictor.DefaultMaxBytes); err != nil {
			return nil, nil, "", err
		}
		source = path
	}
	dec, err := modelfile.Decode(raw)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", source, err)
	}
	return raw, dec, source, nil
}
