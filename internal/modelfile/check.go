package modelfile

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"unicode/utf8"

	"github.com/fashion-classifier/fashion/internal/arch"
)

// Limits on what a model file may say about itself. They are far above
// any real classifier and far below what could exhaust memory: a file
// listing two million class names is refused from the length of the list,
// before it is parsed or any layer is built.
const (
	// MaxClasses is the most classes a model may have.
	MaxClasses = 10_000
	// MaxClassName is the longest class name, in bytes.
	MaxClassName = 256
	// maxClassesJSON bounds the JSON list of class names.
	maxClassesJSON = MaxClasses * (MaxClassName + 3)
)

// ParseClasses parses a JSON list of class names, as model files record
// them, and checks it with CheckClasses. An over-long list is refused
// before it is parsed.
func ParseClasses(s string) ([]string, error) {
	if len(s) > maxClassesJSON {
		return nil, fmt.Errorf("class names: %d bytes of JSON, more than %d classes of %d bytes could take", len(s), MaxClasses, MaxClassName)
	}
	var classes []string
	if err := json.Unmarshal([]byte(s), &classes); err != nil {
		return nil, fmt.Errorf("class names must be a JSON list of strings: %w", err)
	}
	return classes, CheckClasses(classes)
}

// CheckClasses checks a model's class names: at least two and at most
// MaxClasses, each a non-empty UTF-8 string of at most MaxClassName bytes,
// no two alike (a response naming one class twice would be ambiguous).
func CheckClasses(classes []string) error {
	if len(classes) < 2 || len(classes) > MaxClasses {
		return fmt.Errorf("a model needs 2 to %d class names, this one has %d", MaxClasses, len(classes))
	}
	seen := make(map[string]bool, len(classes))
	for i, c := range classes {
		switch {
		case c == "" || len(c) > MaxClassName:
			return fmt.Errorf("class name %d is %d bytes long; want 1 to %d", i, len(c), MaxClassName)
		case !utf8.ValidString(c):
			return fmt.Errorf("class name %d (%q) is not valid UTF-8", i, c)
		case seen[c]:
			return fmt.Errorf("class name %q appears twice", c)
		}
		seen[c] = true
	}
	return nil
}

// Plausible input normalisations. Mean and std are of pixel/255, a value
// in [0, 1], so its mean lies in [0, 1] and its std in [0, 0.5]; std is
// allowed up to 1 for scale-only normalisations and down to 1/1000 (raw
// 0–255 pixel values are std 1/255). Anything else (Inf, NaN, 1e38, a
// negative std) would make every input the same, or every output NaN.
const (
	minStd = 1e-3
	maxStd = 1
)

// CheckNormalization refuses an input normalisation that cannot be right.
func CheckNormalization(mean, std float32) error {
	if !(mean >= 0 && mean <= 1) { // also NaN
		return fmt.Errorf("normalisation mean %v is not in [0, 1], where the mean of pixel/255 lies", mean)
	}
	if !(std >= minStd && std <= maxStd) {
		return fmt.Errorf("normalisation std %v is not in [%v, %v]", std, float32(minStd), float32(maxStd))
	}
	return nil
}

// paramShape is one parameter of an architecture as its file stores it.
type paramShape struct {
	name  string
	shape []int
}

// paramShapes returns the parameters architecture a has for the given
// number of classes, without building a network that large: it builds the
// architecture for two and for three classes (small, whatever a file
// claims) and extrapolates the dimensions that grow with the class count,
// which for a classifier is the output of its last layer.
func paramShapes(a arch.Arch, classes int) ([]paramShape, error) {
	p2 := a.Build(rand.New(rand.NewPCG(0, 0)), 2).Params()
	p3 := a.Build(rand.New(rand.NewPCG(0, 0)), 3).Params()
	if len(p2) != len(p3) {
		return nil, fmt.Errorf("architecture %q has a number of parameters that depends on the class count", a.Name)
	}
	out := make([]paramShape, len(p2))
	for i := range p2 {
		if p2[i].Name != p3[i].Name || len(p2[i].Shape) != len(p3[i].Shape) {
			return nil, fmt.Errorf("architecture %q: parameter %q changes with the class count", a.Name, p2[i].Name)
		}
		shape := slices.Clone(p2[i].Shape)
		for d := range shape {
			step := p3[i].Shape[d] - p2[i].Shape[d]
			shape[d] += step * (classes - 2)
		}
		out[i] = paramShape{p2[i].Name, shape}
	}
	return out, nil
}

// finite reports the index of the first NaN or infinity in v, or -1.
func finite(v []float32) int {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i
		}
	}
	return -1
}
