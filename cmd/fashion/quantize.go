package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/safefile"
	"github.com/fashion-classifier/fashion/internal/safetensors"
	shipped "github.com/fashion-classifier/fashion/model"
)

// maxCalib bounds -calib: the calibration images are held in memory as
// float32 (3 KiB each).
const maxCalib = 60000

func runQuantize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("quantize", stderr)
	in := fs.String("model", "", "model file to quantize (ours, .safetensors, or ONNX; default: the embedded model)")
	out := fs.String("out", "", "where to write the int8 model file")
	dataFlag := fs.String("data", "", "Fashion-MNIST directory (default: $FASHION_DATA, ./data/fashion-mnist, /usr/share/datasets/fashion-mnist)")
	calib := fs.Int("calib", 2000, "training images (the first N of the training set, never test images) that calibrate the activation ranges")
	keep := fs.String("float", "first", "layers to keep in float32: a comma-separated list of \"first\", \"last\" or layer numbers, or \"none\"\n"+
		"(the first layer, one input channel, costs little and its float32 kernel is faster than im2col + int8 here)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fashion quantize [-model in.safetensors|in.onnx] -out q.safetensors [-data DIR] [-calib N]\n\n"+
			"Post-training static quantization: batch norms folded (as the compiled program does), every\n"+
			"convolution and fully connected layer with no or a ReLU activation given int8 weights with one\n"+
			"symmetric scale per output channel and a uint8 input with one scale and zero point calibrated on\n"+
			"N training images. The output opens like any model file (metadata precision int8); the float32\n"+
			"weights of the int8 layers are left out, so it cannot be exported or trained from. An ONNX\n"+
			"model's output holds its graph (without those weights) and opens on the same kernels.\n\n")
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
	raw := shipped.Weights
	source := "embedded"
	if *in != "" {
		var err error
		if raw, err = safefile.ReadFile(ctx, *in, predictor.DefaultMaxBytes); err != nil {
			return err
		}
		source = *in
	}
	p, err := predictor.Open(ctx, *in, predictor.Options{})
	if err != nil {
		return err
	}
	// The embedded default is the benchmark model and the photo model; raw
	// holds the benchmark model's file, so that is what is quantized.
	p = predictor.For(p, true)
	info := p.Info()
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != info.SHA256 {
		return fmt.Errorf("%s changed while it was read", source)
	}
	if info.Precision == modelfile.PrecisionInt8 {
		return fmt.Errorf("%s is already quantized", source)
	}
	pp, ok := p.(interface{ Program() *infer.Program })
	if !ok {
		return fmt.Errorf("%s: this kind of model cannot be quantized", source)
	}
	prog := pp.Program()
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
	info.Normalize(x, data.Train.Images.Pix[:n*px])
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
	var dropped []string
	weights := prog.Int8Weights()
	for i, l := range all {
		if !float[i] {
			layers[i] = l
			if w := weights[i]; w != "" && !slices.Contains(dropped, w) {
				dropped = append(dropped, w)
			}
		}
	}
	if len(layers) == 0 {
		return fmt.Errorf("-float %q keeps every layer in float32", *keep)
	}
	qprog, err := prog.WithInt8(all, func(i int) bool { return !float[i] })
	if err != nil {
		return err
	}
	calibratedOn := fmt.Sprintf("fashion-mnist train images 0-%d", n-1)
	var f *safetensors.File
	switch p.(type) {
	case *modelfile.Classifier:
		src, err := safetensors.Decode(raw)
		if err != nil {
			return err
		}
		f = modelfile.Int8File(src, layers, dropped, calibratedOn)
	default: // ONNX
		graph, err := onnx.DropInitializers(raw, dropped)
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		f = modelfile.ONNXInt8File(info, graph, layers, dropped, calibratedOn)
	}
	if err := safetensors.WriteFile(*out, f); err != nil {
		return err
	}
	// Open the result exactly as every command will, and check that it
	// computes what the quantized program computes.
	q, err := predictor.Open(ctx, *out, predictor.Options{})
	if err != nil {
		return fmt.Errorf("the written model does not open: %w", err)
	}
	check := min(n, 256)
	want := infer.NewPredictor(qprog)
	want.SetTemperature(info.Temperature)
	a, err := want.Predict(x[:check*px], check)
	if err != nil {
		return err
	}
	b, err := q.Predict(x[:check*px], check)
	if err != nil {
		return err
	}
	if !slices.Equal(a, b) {
		return fmt.Errorf("the written model %s does not compute what the quantized program does (a bug)", *out)
	}
	size := "?"
	if st, err := os.Stat(*out); err == nil {
		size = fmt.Sprint(st.Size())
	}
	fmt.Fprintf(stdout, "wrote %s (%s bytes; %s: %d bytes): %d of %d layers int8 (calibrated on %d training images), float32 weights of %d left out\n",
		*out, size, source, len(raw), len(layers), nq, n, len(dropped))
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
