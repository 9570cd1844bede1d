package modelfile

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/nn"
	"github.com/fashion-classifier/fashion/internal/safetensors"
	shipped "github.com/fashion-classifier/fashion/model"
)

// testSet loads the official test set, or skips when no dataset is
// installed (CI always provides one through FASHION_DATA).
func testSet(t *testing.T) idx.Set {
	t.Helper()
	dir := datatest.FashionMNISTDir(t)
	set, err := idx.LoadTest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestShippedModelAccuracy is the promise of the model card: the embedded
// weights classify at least 95% of the official test set correctly, and
// the accuracy recorded in the file is the one measured here.
func TestShippedModelAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("classifies all 10,000 test images; run without -short (CI's main test run does)")
	}
	set := testSet(t)
	c, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	info := c.Info()
	x := make([]float32, set.Images.N*Pixels)
	info.Normalize(x, set.Images.Pix)
	probs, err := c.Predict(x, set.Images.N)
	if err != nil {
		t.Fatal(err)
	}
	correct := 0
	for i := range set.Images.N {
		if eval.Argmax(probs[i*10:(i+1)*10]) == int(set.Labels[i]) {
			correct++
		}
	}
	acc := float64(correct) / float64(set.Images.N)
	t.Logf("shipped model: %d of %d correct (%.4f), file says %.4f", correct, set.Images.N, acc, info.TestAccuracy)
	if acc < 0.95 {
		t.Errorf("accuracy %.4f, want ≥ 0.95", acc)
	}
	// Training measures with batch norm as a separate layer; inference
	// folds it into the convolutions, which can flip an image whose two
	// best classes tie to within float32 rounding.
	if math.Abs(acc-info.TestAccuracy) > 2.5e-4 {
		t.Errorf("measured accuracy %.4f differs from the %.4f recorded in the model file", acc, info.TestAccuracy)
	}
}

func TestPredictIsConcurrencySafeAndBatchInvariant(t *testing.T) {
	c, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	const n = 7
	x := make([]float32, n*Pixels)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	all, err := c.Predict(x, n)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, n)
	for i := range n {
		go func() {
			one, err := c.Predict(x[i*Pixels:(i+1)*Pixels], 1)
			if err == nil {
				for j, p := range one {
					if math.Abs(float64(p-all[i*10+j])) > 1e-5 {
						err = fmt.Errorf("image %d class %d: alone %v, in a batch %v", i, j, p, all[i*10+j])
						break
					}
				}
			}
			done <- err
		}()
	}
	for range n {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if _, err := c.Predict(x[:5], 1); err == nil {
		t.Error("Predict accepted 5 values for one image")
	}
}

func TestDecodeRejectsBadFiles(t *testing.T) {
	good := func() *safetensors.File {
		f, err := safetensors.Decode(shipped.Weights)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	encode := func(f *safetensors.File) []byte {
		var b bytes.Buffer
		if err := safetensors.Encode(&b, f); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	with := func(key, value string) []byte {
		f := good()
		f.Metadata[key] = value
		return encode(f)
	}
	flipped := append([]byte(nil), shipped.Weights...)
	flipped[9] ^= 0xff // inside the JSON header
	wrongArch := good()
	wrongArch.Metadata["arch"] = "mobilenetv3-small"
	wrongShape := good()
	wrongShape.Tensors[0].Shape = []int{len(wrongShape.Tensors[0].Data)}
	nonFinite := good()
	nonFinite.Tensors[2].Data[0] = float32(math.Inf(1))
	missing := good()
	missing.Tensors = missing.Tensors[1:]
	extra := good()
	extra.Tensors = append(extra.Tensors, safetensors.Tensor{Name: "extra", Shape: []int{1}, Data: []float32{1}})
	names := func(n int, name func(i int) string) string {
		var b strings.Builder
		b.WriteByte('[')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q", name(i))
		}
		b.WriteByte(']')
		return b.String()
	}
	eleven := names(11, func(i int) string { return fmt.Sprint("class", i) })
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", shipped.Weights[:1000], "truncated"},
		{"bit flip in header", flipped, "JSON"},
		{"wrong architecture", encode(wrongArch), "lacks tensor"},
		{"unknown architecture", with("arch", "resnet"), "unknown architecture"},
		{"wrong shape", encode(wrongShape), "has shape"},
		{"missing tensor", encode(missing), "lacks tensor"},
		{"non-finite weight", encode(nonFinite), "non-finite"},
		{"extra tensor", encode(extra), "does not use"},
		{"mean +Inf", with("mean", "+Inf"), "mean +Inf is not in [0, 1]"},
		{"mean NaN", with("mean", "NaN"), "mean NaN"},
		{"mean 1e38", with("mean", "1e38"), "mean 1e+38"},
		{"std 0", with("std", "0"), "std 0 is not in"},
		{"std negative", with("std", "-0.3"), "std -0.3"},
		{"std NaN", with("std", "NaN"), "std NaN"},
		{"std 1e38", with("std", "1e38"), "std 1e+38"},
		{"std not a number", with("std", "wide"), "not a number"},
		{"one class", with("classes", `["only"]`), "2 to 10000 class names, this one has 1"},
		{"classes not a list", with("classes", `{"a":1}`), "JSON list"},
		{"empty class name", with("classes", names(10, func(i int) string { return strings.Repeat("x", i) })), "class name 0 is 0 bytes"},
		{"duplicate class", with("classes", names(10, func(i int) string { return fmt.Sprint(i % 9) })), "appears twice"},
		{"11 names for 10 outputs", with("classes", eleven), "with 11 classes needs [64 11]"},
		{"10,001 classes", with("classes", names(10_001, func(i int) string { return fmt.Sprint(i) })), "this one has 10001"},
		{"2 million classes", with("classes", names(2_000_000, func(i int) string { return "a" })), "more than 10000 classes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err = Decode(tc.data)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode: %v, want an error mentioning %q", err, tc.want)
			}
			// Refusing costs about the file's own bytes (the header is
			// parsed, the weights viewed, small probe networks built), never a network built to the
			// size the file claims: 2 million classes would be 2 GB.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(4*len(tc.data))+48<<20 {
				t.Errorf("refusing a %d-byte file allocated %d bytes", len(tc.data), grew)
			}
		})
	}
}

func TestArchitecturesBuild(t *testing.T) {
	for name, a := range arch.Archs() {
		net := a.Build(rand.New(rand.NewPCG(1, 2)), 10)
		params := 0
		for _, p := range net.Params() {
			params += len(p.Value)
		}
		t.Logf("%s: %d values", name, params)
		x := make([]float32, 2*Pixels)
		d, err := Decode(mustEncode(t, net, Meta{Arch: name, Classes: FashionClasses, Mean: DefaultMean, Std: DefaultStd}))
		if err != nil {
			t.Fatalf("%s: own file does not load: %v", name, err)
		}
		c, err := New(d, name, "test")
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.Predict(x, 2)
		if err != nil || len(p) != 20 {
			t.Fatalf("%s: Predict gave %d values, %v", name, len(p), err)
		}
	}
}

func mustEncode(t *testing.T, net *nn.Sequential, m Meta) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := safetensors.Encode(&b, Encode(net, m)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestLoadInitGrowsTheClassifier: fine-tuning a 10-class model into 12
// classes keeps every weight of the file, the old classes' classifier
// outputs included, and leaves the two new outputs at their fresh
// initialisation; anything else that does not match is refused.
func TestLoadInitGrowsTheClassifier(t *testing.T) {
	a, err := arch.LookupArch("vgg")
	if err != nil {
		t.Fatal(err)
	}
	old := a.Build(rand.New(rand.NewPCG(1, 2)), 10)
	weights := map[string][]float32{}
	for _, p := range old.Params() {
		weights[p.Name] = p.Value
	}
	grown := a.Build(rand.New(rand.NewPCG(3, 4)), 12)
	fresh := map[string][]float32{}
	for _, p := range grown.Params() {
		fresh[p.Name] = append([]float32(nil), p.Value...)
	}
	if err := LoadInit(grown, weights, 10, 12); err != nil {
		t.Fatal(err)
	}
	grew := 0
	for _, p := range grown.Params() {
		w := weights[p.Name]
		if len(w) == len(p.Value) {
			if !slices.Equal(w, p.Value) {
				t.Errorf("%s: not the file's weights", p.Name)
			}
			continue
		}
		grew++
		for r := range len(p.Value) / 12 {
			if !slices.Equal(p.Value[r*12:r*12+10], w[r*10:(r+1)*10]) {
				t.Fatalf("%s row %d: old outputs not the file's", p.Name, r)
			}
			if !slices.Equal(p.Value[r*12+10:(r+1)*12], fresh[p.Name][r*12+10:(r+1)*12]) {
				t.Fatalf("%s row %d: new outputs not freshly initialised", p.Name, r)
			}
		}
	}
	if grew != 2 {
		t.Errorf("%d parameters grew, want the classifier's weight and bias", grew)
	}
	for _, tt := range []struct {
		name       string
		oldK, newK int
	}{
		{"class counts that do not match the file", 9, 12},
		{"fewer classes", 10, 8},
	} {
		net := a.Build(rand.New(rand.NewPCG(5, 6)), max(tt.newK, 1))
		if err := LoadInit(net, weights, tt.oldK, tt.newK); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	res, _ := arch.LookupArch("resnet20")
	if err := LoadInit(res.Build(rand.New(rand.NewPCG(5, 6)), 12), weights, 10, 12); err == nil {
		t.Error("VGG weights into ResNet-20: accepted")
	}
}
