package modelfile

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/safetensors"
	shipped "github.com/fashion-classifier/fashion/model"
)

// int8File quantizes the shipped model on synthetic inputs (no data
// needed) and returns the file's tensors and metadata for edits.
func int8File(t *testing.T) (*safetensors.File, *Classifier) {
	t.Helper()
	c, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 2))
	n := 16
	x := make([]float32, n*Pixels)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	prog := c.Program()
	ranges, err := prog.Calibrate(x, n, 8)
	if err != nil {
		t.Fatal(err)
	}
	all, err := prog.QuantizeWeights(ranges)
	if err != nil {
		t.Fatal(err)
	}
	layers := map[int]infer.Int8Layer{}
	for i, l := range all {
		layers[i] = l
	}
	f, err := safetensors.Decode(shipped.Weights)
	if err != nil {
		t.Fatal(err)
	}
	f.Tensors = append(f.Tensors, Int8Tensors(layers)...)
	f.Metadata["precision"] = PrecisionInt8
	return f, c
}

func encodeFile(t *testing.T, f *safetensors.File) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := safetensors.Encode(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestInt8ModelFileOpensAndAgrees(t *testing.T) {
	f, fp := int8File(t)
	d, err := Decode(encodeFile(t, f))
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(d, DefaultName, "test")
	if err != nil {
		t.Fatal(err)
	}
	if q.Info().Precision != PrecisionInt8 || fp.Info().Precision != PrecisionFloat32 {
		t.Errorf("precisions %q and %q", q.Info().Precision, fp.Info().Precision)
	}
	ints := 0
	for i := range q.Program().Steps() {
		if _, ok := q.Program().Step(i).(*infer.Int8Conv); ok {
			ints++
		}
	}
	if ints != fp.Program().Quantizable() || ints == 0 || q.Program().Quantizable() != 0 {
		t.Errorf("%d int8 steps, want %d", ints, fp.Program().Quantizable())
	}
	// Smooth synthetic images: the two programs agree on the class of
	// nearly all and their logits are close.
	rng := rand.New(rand.NewPCG(9, 9))
	n := 32
	x := make([]float32, n*Pixels)
	for i := range x {
		x[i] = float32(math.Sin(float64(i%Pixels)/float64(3+i/Pixels%7))) + float32(rng.NormFloat64()*0.1)
	}
	a, err := fp.Logits(x, n)
	if err != nil {
		t.Fatal(err)
	}
	a = append([]float32(nil), a...)
	b, err := q.Logits(x, n)
	if err != nil {
		t.Fatal(err)
	}
	agree, worst, span := 0, 0.0, 0.0
	for r := range n {
		if argmax(a[r*10:(r+1)*10]) == argmax(b[r*10:(r+1)*10]) {
			agree++
		}
		for j := r * 10; j < (r+1)*10; j++ {
			worst = math.Max(worst, math.Abs(float64(a[j]-b[j])))
			span = math.Max(span, math.Abs(float64(a[j])))
		}
	}
	if agree < n*9/10 || worst > 0.1*span {
		t.Errorf("int8 and float32 agree on %d of %d images; logits differ by up to %.3g (largest %.3g)", agree, n, worst, span)
	}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func TestDecodeRejectsBadInt8Files(t *testing.T) {
	edit := func(fn func(f *safetensors.File)) []byte {
		f, _ := int8File(t)
		fn(f)
		return encodeFile(t, f)
	}
	find := func(f *safetensors.File, name string) *safetensors.Tensor {
		for i := range f.Tensors {
			if f.Tensors[i].Name == name {
				return &f.Tensors[i]
			}
		}
		t.Fatalf("no tensor %q", name)
		return nil
	}
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"no precision", "precision is", edit(func(f *safetensors.File) { delete(f.Metadata, "precision") })},
		{"bad precision", "precision", edit(func(f *safetensors.File) { f.Metadata["precision"] = "int4" })},
		{"no layers", "no int8 layers", edit(func(f *safetensors.File) {
			kept := f.Tensors[:0]
			for _, t := range f.Tensors {
				if !strings.HasPrefix(t.Name, Int8Prefix) {
					kept = append(kept, t)
				}
			}
			f.Tensors = kept
		})},
		{"missing part", "needs the tensors", edit(func(f *safetensors.File) {
			find(f, "int8/1/scale").Name = "ood/unused"
		})},
		{"bad name", "names are", edit(func(f *safetensors.File) { find(f, "int8/1/scale").Name = "int8/01/scale" })},
		{"layer beyond network", "quantizable layers", edit(func(f *safetensors.File) {
			for _, s := range []string{"w", "scale", "input"} {
				find(f, "int8/0/"+s).Name = "int8/99/" + s
			}
		})},
		{"zero point", "zero point", edit(func(f *safetensors.File) { find(f, "int8/2/input").Data = []float32{0.1, 300} })},
		{"float weights", "wrong type", edit(func(f *safetensors.File) {
			w := find(f, "int8/2/w")
			w.Data, w.Int8 = make([]float32, len(w.Int8)), nil
		})},
		{"wrong shape", "for a layer of", edit(func(f *safetensors.File) {
			w := find(f, "int8/2/w")
			w.Shape = []int{w.Shape[1], w.Shape[0]}
		})},
		{"negative scale", "not a positive number", edit(func(f *safetensors.File) { find(f, "int8/3/scale").Data[0] = -1 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Decode(tc.data)
			if err == nil {
				_, err = New(d, DefaultName, "test")
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// BenchmarkPredictInt8 is BenchmarkPredict for the shipped model quantized
// to int8 (calibrated on synthetic inputs: the speed does not depend on
// the scales).
func BenchmarkPredictInt8(b *testing.B) {
	t := &testing.T{}
	f, _ := int8File(t)
	d, err := Decode(encodeFile(t, f))
	if err != nil {
		b.Fatal(err)
	}
	c, err := New(d, DefaultName, "bench")
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 256} {
		x := make([]float32, n*Pixels)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		b.Run(map[int]string{1: "batch=1", 256: "batch=256"}[n], func(b *testing.B) {
			for range b.N {
				if _, err := c.Predict(x, n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "img/s")
		})
	}
}
