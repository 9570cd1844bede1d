package modelfile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/nn"
	"github.com/fashion-classifier/fashion/internal/safetensors"
)

// Meta is what a model file says about itself besides its weights. It is
// stored as safetensors metadata (strings), so other tools can read it.
type Meta struct {
	Arch         string
	Classes      []string
	Mean, Std    float32
	TestAccuracy float64 // 0 when not measured
	Command      string  // the training command line
	Seed         uint64
	Epochs       int
	// Temperature divides the logits before the softmax (calibration,
	// fitted by fashion calibrate on held-out data); 0 or 1 means none.
	Temperature float64
	// OOD is the out-of-distribution detector's normalisation and
	// threshold (ood.Norm as JSON; its arrays are the file's "ood/…"
	// tensors), or "" when the model has none.
	OOD string
	// Precision is PrecisionInt8 for a quantized model (see quant.go),
	// "" for float32.
	Precision string
	// Storage is StorageF16 when the network's weights are stored as
	// IEEE half-precision (F16) tensors, "" for F32 (see storage.go).
	Storage string
	// Dropped names the float32 tensors an int8 file leaves out (see
	// quant.go).
	Dropped []string
}

func (m Meta) encode() map[string]string {
	classes, _ := json.Marshal(m.Classes)
	md := map[string]string{
		"format":  "fashion-classifier/1",
		"arch":    m.Arch,
		"classes": string(classes),
		"mean":    strconv.FormatFloat(float64(m.Mean), 'g', -1, 32),
		"std":     strconv.FormatFloat(float64(m.Std), 'g', -1, 32),
		"seed":    strconv.FormatUint(m.Seed, 10),
		"epochs":  strconv.Itoa(m.Epochs),
		"command": m.Command,
	}
	if m.TestAccuracy > 0 {
		md["test_accuracy"] = strconv.FormatFloat(m.TestAccuracy, 'f', 4, 64)
	}
	if m.Temperature > 0 {
		md["temperature"] = strconv.FormatFloat(m.Temperature, 'g', -1, 64)
	}
	if m.OOD != "" {
		md["ood"] = m.OOD
	}
	if m.Precision != "" {
		md["precision"] = m.Precision
	}
	if m.Storage != "" {
		md["storage"] = m.Storage
	}
	if len(m.Dropped) > 0 {
		b, _ := json.Marshal(m.Dropped)
		md["int8_dropped"] = string(b)
	}
	return md
}

func decodeMeta(md map[string]string) (Meta, error) {
	m := Meta{Arch: md["arch"], Command: md["command"]}
	if m.Arch == "" {
		return m, fmt.Errorf("metadata has no \"arch\": not a fashion-classifier model file")
	}
	classes, err := ParseClasses(md["classes"])
	if err != nil {
		return m, fmt.Errorf("metadata \"classes\": %w", err)
	}
	m.Classes = classes
	for _, f := range []struct {
		key string
		dst *float32
	}{{"mean", &m.Mean}, {"std", &m.Std}} {
		v, err := strconv.ParseFloat(md[f.key], 32)
		if err != nil {
			return m, fmt.Errorf("metadata %q is not a number: %q", f.key, md[f.key])
		}
		*f.dst = float32(v)
	}
	if err := CheckNormalization(m.Mean, m.Std); err != nil {
		return m, fmt.Errorf("metadata \"mean\" and \"std\": %w", err)
	}
	if s := md["test_accuracy"]; s != "" {
		m.TestAccuracy, _ = strconv.ParseFloat(s, 64)
	}
	if s := md["temperature"]; s != "" {
		t, err := ParseTemperature(s)
		if err != nil {
			return m, err
		}
		m.Temperature = t
	}
	m.OOD = md["ood"]
	switch p := md["precision"]; p {
	case "", PrecisionFloat32:
	case PrecisionInt8:
		m.Precision = p
	default:
		return m, fmt.Errorf("metadata \"precision\" must be %q or %q, got %q", PrecisionFloat32, PrecisionInt8, p)
	}
	if m.Storage, err = ParseStorage(md["storage"]); err != nil {
		return m, fmt.Errorf("metadata \"storage\": %w", err)
	}
	if m.Dropped, err = parseDropped(md["int8_dropped"]); err != nil {
		return m, err
	}
	if m.Dropped != nil && m.Precision != PrecisionInt8 {
		return m, fmt.Errorf("metadata \"int8_dropped\" in a file whose precision is not int8")
	}
	m.Seed, _ = strconv.ParseUint(md["seed"], 10, 64)
	m.Epochs, _ = strconv.Atoi(md["epochs"])
	return m, nil
}

// Encode turns a network's parameters and meta into a safetensors file,
// the parameters stored as meta.Storage says.
func Encode(net *nn.Sequential, meta Meta) *safetensors.File {
	f := &safetensors.File{Metadata: meta.encode()}
	for _, p := range net.Params() {
		f.Tensors = append(f.Tensors, safetensors.Tensor{Name: p.Name, Shape: p.Shape, Data: p.Value, Half: meta.Storage == StorageF16})
	}
	return f
}

// Save writes the network to path atomically.
func Save(path string, net *nn.Sequential, meta Meta) error {
	return safetensors.WriteFile(path, Encode(net, meta))
}

// ParseTemperature reads a calibration temperature as model metadata
// stores it (ours and exported ONNX files), refusing values outside
// [0.01, 100], where a softmax is either a hard argmax or uniform.
func ParseTemperature(s string) (float64, error) {
	t, err := strconv.ParseFloat(s, 64)
	if err != nil || !(t >= 0.01 && t <= 100) {
		return 0, fmt.Errorf("metadata \"temperature\" must be a number in [0.01, 100], got %q", s)
	}
	return t, nil
}

// Decoded is a model file checked against its architecture: the metadata
// and the weights in the order the architecture's parameters expect.
type Decoded struct {
	Meta    Meta
	Weights map[string][]float32
	// Extra holds the tensors that are not the network's: the
	// out-of-distribution detector's, named "ood/…".
	Extra map[string][]float32
	// Int8 holds a quantized model's int8 layers by layer number (see
	// quant.go), or nil.
	Int8 map[int]infer.Int8Layer
	// ONNX is a quantized ONNX model's graph (Meta.Arch is ArchONNX), or
	// nil.
	ONNX   []byte
	SHA256 string
}

// ExtraPrefix starts the names of tensors a model file may hold besides
// the network's weights.
const ExtraPrefix = "ood/"

// Decode parses model file bytes and checks that they hold exactly the
// tensors, with exactly the shapes, that the named architecture needs for
// the file's class count, and only finite weights. Every check runs before
// a network of the file's size is built, so a file claiming millions of
// classes costs no more than its own bytes.
func Decode(data []byte) (*Decoded, error) {
	f, err := safetensors.Decode(data)
	if err != nil {
		return nil, err
	}
	meta, err := decodeMeta(f.Metadata)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	d := &Decoded{Meta: meta, Weights: map[string][]float32{}, SHA256: hex.EncodeToString(sum[:])}
	if meta.Arch == ArchONNX {
		return decodeONNXInt8(f, d)
	}
	a, err := arch.LookupArch(meta.Arch)
	if err != nil {
		return nil, err
	}
	params, err := paramShapes(a, len(meta.Classes))
	if err != nil {
		return nil, err
	}
	var half, full string // a network tensor stored as F16, and one as F32
	dropped := map[string]bool{}
	for _, n := range meta.Dropped {
		dropped[n] = true
	}
	for _, p := range params {
		t, ok := f.Lookup(p.name)
		if dropped[p.name] {
			if ok {
				return nil, fmt.Errorf("model file has tensor %q, which its metadata says was left out", p.name)
			}
			delete(dropped, p.name)
			n := 1
			for _, s := range p.shape {
				n *= s
			}
			d.Weights[p.name] = make([]float32, n) // replaced by the int8 layer; checked by Int8Program
			continue
		}
		if !ok {
			return nil, fmt.Errorf("model file lacks tensor %q that architecture %q needs (wrong architecture or damaged file)", p.name, meta.Arch)
		}
		if !slices.Equal(t.Shape, p.shape) {
			return nil, fmt.Errorf("tensor %q has shape %v, architecture %q with %d classes needs %v", p.name, t.Shape, meta.Arch, len(meta.Classes), p.shape)
		}
		if t.Int8 != nil || t.U8 != nil {
			return nil, fmt.Errorf("tensor %q is int8 or uint8; the network's weights are float32", p.name)
		}
		if i := finite(t.Data); i >= 0 {
			return nil, fmt.Errorf("tensor %q holds %v at index %d: the file is damaged (a model never has non-finite weights)", p.name, t.Data[i], i)
		}
		d.Weights[p.name] = t.Data
		if t.Half {
			half = p.name
		} else {
			full = p.name
		}
	}
	if err := checkStorage(meta.Storage, half, full); err != nil {
		return nil, err
	}
	for n := range dropped {
		return nil, fmt.Errorf("metadata \"int8_dropped\" names %q, which architecture %q does not have", n, meta.Arch)
	}
	for _, t := range f.Tensors {
		if strings.HasPrefix(t.Name, ExtraPrefix) {
			if t.Int8 != nil || t.U8 != nil {
				return nil, fmt.Errorf("tensor %q is int8 or uint8; it must be float32", t.Name)
			}
			if d.Extra == nil {
				d.Extra = map[string][]float32{}
			}
			d.Extra[t.Name] = t.Data
		}
	}
	int8Layers, int8Tensors, err := decodeInt8(f)
	if err != nil {
		return nil, err
	}
	if len(int8Layers) > 0 {
		d.Int8 = int8Layers
	}
	if len(f.Tensors) != len(d.Weights)-len(meta.Dropped)+len(d.Extra)+int8Tensors {
		for _, t := range f.Tensors {
			if _, ok := d.Weights[t.Name]; !ok && !strings.HasPrefix(t.Name, ExtraPrefix) && !strings.HasPrefix(t.Name, Int8Prefix) {
				return nil, fmt.Errorf("model file has tensor %q that architecture %q does not use", t.Name, meta.Arch)
			}
		}
	}
	return d, nil
}

// decodeONNXInt8 is Decode for a quantized ONNX model's file: its graph
// and int8 layers, nothing else. The graph is compiled, and the int8
// layers checked against it, by package onnx.
func decodeONNXInt8(f *safetensors.File, d *Decoded) (*Decoded, error) {
	if d.Meta.Precision != PrecisionInt8 {
		return nil, fmt.Errorf("model file has architecture %q but precision %q: a float32 ONNX model is an .onnx file", ArchONNX, d.Meta.Precision)
	}
	g, ok := f.Lookup(ONNXGraph)
	if !ok || g.U8 == nil || len(g.Shape) != 1 {
		return nil, fmt.Errorf("quantized ONNX model file lacks its graph, a one-dimensional U8 tensor %q", ONNXGraph)
	}
	d.ONNX = g.U8
	layers, used, err := decodeInt8(f)
	if err != nil {
		return nil, err
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("model file says precision int8 but has no int8 layers")
	}
	d.Int8 = layers
	if len(f.Tensors) != used+1 {
		for _, t := range f.Tensors {
			if t.Name != ONNXGraph && !strings.HasPrefix(t.Name, Int8Prefix) {
				return nil, fmt.Errorf("quantized ONNX model file has tensor %q besides its graph and int8 layers", t.Name)
			}
		}
	}
	return d, nil
}

// Load copies weights into net's parameters (which must match by name and
// size, as Decode guarantees for the decoded architecture).
func Load(net *nn.Sequential, weights map[string][]float32) error {
	for _, p := range net.Params() {
		w, ok := weights[p.Name]
		if !ok || len(w) != len(p.Value) {
			return fmt.Errorf("no weights of size %d for %q", len(p.Value), p.Name)
		}
		copy(p.Value, w)
	}
	return nil
}

// LoadInit is Load for fine-tuning a model of oldK classes into net, built
// for newK ≥ oldK classes: a parameter whose last dimension is newK and of
// which the file holds oldK per row (the classifier's weight and bias) gets
// the file's values for the first oldK outputs and keeps net's fresh
// initialisation for the new ones. Every other parameter must match
// exactly.
func LoadInit(net *nn.Sequential, weights map[string][]float32, oldK, newK int) error {
	if oldK < 1 || newK < oldK {
		return fmt.Errorf("initial weights for %d classes cannot start a model of %d", oldK, newK)
	}
	for _, p := range net.Params() {
		w, ok := weights[p.Name]
		if ok && len(w) == len(p.Value) {
			copy(p.Value, w)
			continue
		}
		last := 0
		if len(p.Shape) > 0 {
			last = p.Shape[len(p.Shape)-1]
		}
		if !ok || newK == oldK || last != newK || len(w) != len(p.Value)/newK*oldK {
			return fmt.Errorf("no weights of size %d for %q", len(p.Value), p.Name)
		}
		for r := range len(p.Value) / newK {
			copy(p.Value[r*newK:r*newK+oldK], w[r*oldK:(r+1)*oldK])
		}
	}
	return nil
}
