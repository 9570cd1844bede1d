package modelfile

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/safetensors"
)

// Int8 model files (written by fashion quantize) are float32 model files
// with metadata "precision": "int8" and, for each quantized layer i (the
// i-th layer of the compiled program that infer.Program.Quantizable
// counts), three tensors:
//
//	int8/<i>/w      I8  [K, M]  weights, batch norm folded, per column symmetric
//	int8/<i>/scale  F32 [M]     weight = w·scale
//	int8/<i>/input  F32 [2]     the input's uint8 scale and zero point
//
// The float32 weights stay in the file, so the float32 layers (and
// export, and training from it) have them; the quantized layers run on
// the int8 tensors only.

// Int8Prefix starts the names of the int8 layers' tensors.
const Int8Prefix = "int8/"

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

// withInt8 is prog with d's int8 layers swapped in.
func withInt8(prog *infer.Program, d *Decoded) (*infer.Program, error) {
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
	return prog.WithInt8(layers, func(i int) bool { _, ok := d.Int8[i]; return ok })
}
