package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/safetensors"
)

// runConvert rewrites one of our model files with its weights stored
// another way (-storage f16: IEEE half precision, half the bytes).
func runConvert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("convert", stderr)
	in := fs.String("model", "", "model file to convert (.safetensors; default: the embedded model)")
	out := fs.String("out", "", "where to write the converted model file")
	storage := fs.String("storage", "", "how to store the network's weights: f16 (IEEE half precision, rounded to nearest even) or f32")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fashion convert -storage f16|f32 [-model in.safetensors] -out out.safetensors\n\n"+
			"Rewrites a model file with the network's weights stored as F16 (half the bytes; loaded as\n"+
			"float32 and computed in float32) or F32. The out-of-distribution detector's tensors and\n"+
			"int8 layers' scales stay as they are. When rounding changes any weight the file's recorded\n"+
			"test accuracy is dropped: measure the new file with fashion eval.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *storage == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("convert needs -storage and -out")
	}
	raw, _, source, err := readOwnModel(ctx, *in)
	if err != nil {
		return err
	}
	f, err := safetensors.Decode(raw)
	if err != nil {
		return err
	}
	changed, err := modelfile.SetStorage(f, *storage)
	if err != nil {
		return fmt.Errorf("-storage: %w", err)
	}
	note := ""
	if _, had := f.Metadata["test_accuracy"]; had && changed {
		delete(f.Metadata, "test_accuracy")
		note = "; rounding changed weights, so the recorded test accuracy was dropped (measure it with fashion eval)"
	}
	if err := safetensors.WriteFile(*out, f); err != nil {
		return err
	}
	// Open the result exactly as every command will.
	m, err := predictor.Open(ctx, *out, predictor.Options{})
	if err != nil {
		return fmt.Errorf("the written model does not open: %w", err)
	}
	fi, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: storage %s, %d bytes (%s: %d bytes)%s\n", *out, m.Info().Storage, fi.Size(), source, len(raw), note)
	return nil
}
