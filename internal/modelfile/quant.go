package modelfile

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/safetensors"
)

// Int8 model files (written by fashion quantize) are model files with
// metadata "precision": "int8" and, for each quantized layer i (the i-th
// layer of the compiled program that infer.Program.Quantizable counts),
// three tensors:
//
//	int8/<i>/w      I8  [K, M]  weights, batch norm folded, per column symmetric
//	int8/<i>/scale  F32 [M]     weight = w·scale
//	int8/<i>/input  F32 [2]     the input's uint8 scale and zero point
//
// The float32 weights of the quantized layers are left out: metadata
// "int8_dropped" lists them (a JSON array of tensor names), they load as
// zeros, and the program is refused unless every one of them belongs to a
// layer that runs in int8 (so a damaged list cannot silently zero a
// float32 layer). Everything else — biases, batch norms, the float32
// layers — stays. Such a file cannot be exported or trained from
// (Decoded.NeedsFloat32 says why).
//
// Two layouts: a quantized model of ours has our architecture's tensors
// (less the dropped ones); a quantized ONNX model has arch "onnx", its
// graph as the U8 tensor "onnx/graph" (the dropped initializers kept with
// their names, types and shapes but no values) and the int8 tensors, and
// is compiled by package onnx (predictor.Open does it).

// Int8Prefix starts the names of the int8 layers' tensors.
const Int8Prefix = "int8/"

// ArchONNX is the architecture of a quantized ONNX model's file, and
// ONNXGraph the name of its graph tensor.
const (
	ArchONNX  = "onnx"
	ONNXGraph = "onnx/graph"
)

// Precision names of model files.
const (
	PrecisionFloat32 = "float32"
	PrecisionInt8    = "int8"
)

// maxInt8Layers bounds the layer numbers a file may use.
const maxInt8Layers = 4096

// Int8Tensors returns the tensors that store layers (keyed by layer
// number), for appending to a model file.
func Int8Tensors(layers map[int]infer.Int8Layer) []safetensors.Tensor {
	keys := make([]int, 0, len(layers))
	for i := range layers {
		keys = append(keys, i)
	}
	slices.Sort(keys)
	var ts []safetensors.Tensor
	for _, i := range keys {
		l := layers[i]
		p := Int8Prefix + strconv.Itoa(i) + "/"
		ts = append(ts,
			safetensors.Tensor{Name: p + "w", Shape: []int{l.K, l.M}, Int8: l.W},
			safetensors.Tensor{Name: p + "scale", Shape: []int{l.M}, Data: l.WScale},
			safetensors.Tensor{Name: p + "input", Shape: []int{2}, Data: []float32{l.InScale, float32(l.InZero)}})
	}
	return ts
}

// Int8File turns f, one of our float32 model files, into the int8 file of
// layers: the int8 tensors added, the float32 tensors named in dropped
// removed, and the metadata saying so.
func Int8File(f *safetensors.File, layers map[int]infer.Int8Layer, dropped []string, calibratedOn string) *safetensors.File {
	out := &safetensors.File{Metadata: maps.Clone(f.Metadata)}
	for _, t := range f.Tensors {
		if !strings.HasPrefix(t.Name, Int8Prefix) && !slices.Contains(dropped, t.Name) {
			out.Tensors = append(out.Tensors, t)
		}
	}
	out.Tensors = append(out.Tensors, Int8Tensors(layers)...)
	setInt8Meta(out.Metadata, dropped, calibratedOn)
	return out
}

// ONNXInt8File is the int8 file of an ONNX model: graph (the model's
// bytes, the dropped initializers' values removed), the int8 layers, and
// what info says about classes, normalisation and temperature.
func ONNXInt8File(info Info, graph []byte, layers map[int]infer.Int8Layer, dropped []string, calibratedOn string) *safetensors.File {
	m := Meta{Arch: ArchONNX, Classes: info.Classes, Mean: info.Mean, Std: info.Std, Temperature: info.Temperature,
		Command: "quantized from " + info.Source}
	f := &safetensors.File{Metadata: m.encode()}
	delete(f.Metadata, "seed")
	delete(f.Metadata, "epochs")
	f.Tensors = append([]safetensors.Tensor{{Name: ONNXGraph, Shape: []int{len(graph)}, U8: graph}}, Int8Tensors(layers)...)
	setInt8Meta(f.Metadata, dropped, calibratedOn)
	return f
}

func setInt8Meta(md map[string]string, dropped []string, calibratedOn string) {
	md["precision"] = PrecisionInt8
	md["quantized_on"] = calibratedOn
	delete(md, "test_accuracy") // the float32 model's; measure the int8 one with eval
	delete(md, "int8_dropped")
	if len(dropped) > 0 {
		b, _ := json.Marshal(dropped)
		md["int8_dropped"] = string(b)
	}
}

// parseDropped reads metadata "int8_dropped".
func parseDropped(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var names []string
	if err := json.Unmarshal([]byte(s), &names); err != nil {
		return nil, fmt.Errorf("metadata \"int8_dropped\" is not a JSON array of tensor names: %w", err)
	}
	if len(names) > maxInt8Layers {
		return nil, fmt.Errorf("metadata \"int8_dropped\" lists %d tensors; at most %d", len(names), maxInt8Layers)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || seen[n] {
			return nil, fmt.Errorf("metadata \"int8_dropped\" has an empty or repeated name %q", n)
		}
		seen[n] = true
	}
	return names, nil
}

// NeedsFloat32 is nil when d has the float32 weights of every layer, and
// otherwise says that what needs them (export, training) cannot use d.
func (d *Decoded) NeedsFloat32() error {
	if len(d.Meta.Dropped) > 0 || d.Meta.Arch == ArchONNX {
		return fmt.Errorf("an int8 model file without the float32 weights of its int8 layers (%d left out); use the float32 model it was quantized from", len(d.Meta.Dropped))
	}
	return nil
}

// decodeInt8 collects the int8 layers of f's tensors. The shapes are
// checked against the compiled program later (infer.Program.WithInt8).
func decodeInt8(f *safetensors.File) (map[int]infer.Int8Layer, int, error) {
	layers := map[int]infer.Int8Layer{}
	parts := map[int]int{}
	used := 0
	for _, t := range f.Tensors {
		rest, ok := strings.CutPrefix(t.Name, Int8Prefix)
		if !ok {
			continue
		}
		used++
		num, field, ok := strings.Cut(rest, "/")
		i, err := strconv.Atoi(num)
		if !ok || err != nil || i < 0 || i >= maxInt8Layers || strconv.Itoa(i) != num {
			return nil, 0, fmt.Errorf("model file has int8 tensor %q; names are int8/<layer>/{w,scale,input}", t.Name)
		}
		l := layers[i]
		isInt8 := t.Int8 != nil
		switch {
		case field == "w" && isInt8 && len(t.Shape) == 2:
			l.K, l.M, l.W = t.Shape[0], t.Shape[1], t.Int8
		case field == "scale" && !isInt8 && len(t.Shape) == 1:
			l.WScale = t.Data
		case field == "input" && !isInt8 && slices.Equal(t.Shape, []int{2}):
			z := t.Data[1]
			if !(z >= 0 && z <= 255) || z != float32(math.Trunc(float64(z))) {
				return nil, 0, fmt.Errorf("tensor %q: zero point %v is not an integer in [0, 255]", t.Name, z)
			}
			l.InScale, l.InZero = t.Data[0], uint8(z)
		default:
			return nil, 0, fmt.Errorf("model file has int8 tensor %q of the wrong type or shape %v", t.Name, t.Shape)
		}
		layers[i] = l
		parts[i]++
	}
	for i, n := range parts {
		if n != 3 {
			return nil, 0, fmt.Errorf("int8 layer %d needs the tensors w, scale and input; the file has %d of them", i, n)
		}
	}
	return layers, used, nil
}

// Int8Program is prog, compiled from d's float32 tensors (the dropped ones
// as zeros), with d's int8 layers swapped in; prog itself when d is a
// float32 file. It checks that every dropped tensor was the weights of a
// layer that now runs in int8.
func Int8Program(prog *infer.Program, d *Decoded) (*infer.Program, error) {
	if d.Meta.Precision != PrecisionInt8 {
		if len(d.Int8) > 0 {
			return nil, fmt.Errorf("model file has int8 layers but its precision is %q", d.Meta.Precision)
		}
		return prog, nil
	}
	if len(d.Int8) == 0 {
		return nil, fmt.Errorf("model file says precision int8 but has no int8 layers")
	}
	layers := make([]infer.Int8Layer, prog.Quantizable())
	for i, l := range d.Int8 {
		if i >= len(layers) {
			return nil, fmt.Errorf("model file has int8 layer %d; the network has %d quantizable layers", i, len(layers))
		}
		layers[i] = l
	}
	q, err := prog.WithInt8(layers, func(i int) bool { _, ok := d.Int8[i]; return ok })
	if err != nil {
		return nil, err
	}
	int8W := map[string]bool{}
	for i, w := range prog.Int8Weights() {
		if _, ok := d.Int8[i]; ok && w != "" {
			int8W[w] = true
		}
	}
	for _, w := range d.Meta.Dropped {
		if !int8W[w] {
			return nil, fmt.Errorf("model file leaves out tensor %q, which is not the weights of an int8 layer", w)
		}
	}
	for _, w := range q.FloatWeights() {
		if slices.Contains(d.Meta.Dropped, w) {
			return nil, fmt.Errorf("model file leaves out tensor %q, which a float32 layer needs", w)
		}
	}
	return q, nil
}
