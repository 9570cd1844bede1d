package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/safetensors"
)

// maxCalib bounds -calib: the calibration images are held in memory as
// float32 (3 KiB each).
const maxCalib = 60000

func runQuantize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("quantize", stderr)
	in := fs.String("model", "", "model file to quantize (.safetensors; default: the embedded model)")
	out := fs.String("out", "", "where to write the int8 model file")
	dataFlag := fs.String("data", "", "Fashion-MNIST directory (default: $FASHION_DATA, ./data/fashion-mnist, /usr/share/datasets/fashion-mnist)")
	calib := fs.Int("calib", 2000, "training images (the first N of the training set, never test images) that calibrate the activation ranges")
	keep := fs.String("float", "first", "layers to keep in float32: a comma-separated list of \"first\", \"last\" or layer numbers, or \"none\"\n"+
		"(the first layer, one input channel, costs little and its float32 kernel is faster than im2col + int8 here)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fashion quantize [-model in.safetensors] -out q.safetensors [-data DIR] [-calib N]\n\n"+
			"Post-training static quantization: batch norms folded (as the compiled program does), every\n"+
			"convolution and fully connected layer with no or a ReLU activation given int8 weights with one\n"+
			"symmetric scale per output channel and a uint8 input with one scale and zero point calibrated on\n"+
			"N training images. The output opens like any model file (metadata precision int8).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("quantize needs -out")
	}
	if *calib < 1 || *calib > maxCalib {
		return fmt.Errorf("-calib must be between 1 and %d, got %d", maxCalib, *calib)
	}
	raw, dec, source, err := readOwnModel(ctx, *in)
	if err != nil {
		return err
	}
	if dec.Meta.Precision == modelfile.PrecisionInt8 {
		return fmt.Errorf("%s is already quantized", source)
	}
	m, err := modelfile.New(dec, modelfile.DefaultName, source)
	if err != nil {
		return err
	}
	prog := m.Program()
	nq := prog.Quantizable()
	if nq == 0 {
		return fmt.Errorf("%s has no layer that can run in int8", source)
	}
	float, err := parseLayerList(*keep, nq)
	if err != nil {
		return err
	}
	dir, err := idx.FindDir(*dataFlag, os.Getenv)
	if err != nil {
		return err
	}
	data, err := idx.Load(dir)
	if err != nil {
		return err
	}
	n := min(*calib, data.Train.Images.N)
	const px = modelfile.Pixels
	x := make([]float32, n*px)
	m.Info().Normalize(x, data.Train.Images.Pix[:n*px])
	if err := ctx.Err(); err != nil {
		return err
	}
	ranges, err := prog.Calibrate(x, n, 256)
	if err != nil {
		return err
	}
	all, err := prog.QuantizeWeights(ranges)
	if err != nil {
		return err
	}
	layers := map[int]infer.Int8Layer{}
	for i, l := range all {
		if !float[i] {
			layers[i] = l
		}
	}
	if len(layers) == 0 {
		return fmt.Errorf("-float %q keeps every layer in float32", *keep)
	}
	f, err := safetensors.Decode(raw)
	if err != nil {
		return err
	}
	kept := f.Tensors[:0]
	for _, t := range f.Tensors {
		if !strings.HasPrefix(t.Name, modelfile.Int8Prefix) {
			kept = append(kept, t)
		}
	}
	f.Tensors = append(kept, modelfile.Int8Tensors(layers)...)
	f.Metadata["precision"] = modelfile.PrecisionInt8
	f.Metadata["quantized_on"] = fmt.Sprintf("fashion-mnist train images 0-%d", n-1)
	delete(f.Metadata, "test_accuracy") // the float32 model's; measure the int8 one with eval
	if err := safetensors.WriteFile(*out, f); err != nil {
		return err
	}
	// Open the result exactly as every command will.
	if _, err := predictor.Open(ctx, *out, predictor.Options{}); err != nil {
		return fmt.Errorf("the written model does not open: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d of %d layers int8 (calibrated on %d training images)\n", *out, len(layers), nq, n)
	for i, r := range ranges {
		state := "int8"
		if float[i] {
			state = "float32"
		}
		fmt.Fprintf(stdout, "  layer %d: %s, input range [%.4g, %.4g]\n", i, state, r.Min, r.Max)
	}
	return nil
}

// parseLayerList parses -float: "first", "last" or layer numbers below n.
func parseLayerList(s string, n int) (map[int]bool, error) {
	set := map[int]bool{}
	if s == "" || s == "none" {
		return set, nil
	}
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); f {
		case "first":
			set[0] = true
		case "last":
			set[n-1] = true
		default:
			var i int
			if _, err := fmt.Sscanf(f, "%d", &i); err != nil || i < 0 || i >= n || fmt.Sprint(i) != f {
				return nil, fmt.Errorf("-float: %q is not \"first\", \"last\" or a layer number below %d", f, n)
			}
			set[i] = true
		}
	}
	return set, nil
}
