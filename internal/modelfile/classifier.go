package modelfile

import (
	"fmt"
	"math/rand/v2"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/nn"
	shipped "github.com/fashion-classifier/fashion/model"
)

// Classifier is a trained network ready for inference: the network
// compiled once (batch norms folded, activations fused) into an immutable
// infer.Program. It is safe for concurrent use: its Predictor gives each
// concurrent call its own buffers, sharing nothing mutable.
type Classifier struct {
	info Info
	dec  *Decoded
	*infer.Predictor
}

// New builds a classifier from a decoded model file.
func New(d *Decoded, name, source string) (*Classifier, error) {
	a, err := arch.LookupArch(d.Meta.Arch)
	if err != nil {
		return nil, err
	}
	net := a.Build(rand.New(rand.NewPCG(0, 0)), len(d.Meta.Classes))
	if err := Load(net, d.Weights); err != nil {
		return nil, err
	}
	params := 0
	for _, p := range net.Params() {
		if p.Kind != nn.Buffer {
			params += len(p.Value)
		}
	}
	prog, err := infer.Compile(net, Side, Side, 1)
	if err != nil {
		return nil, fmt.Errorf("model: compiling %s: %w", d.Meta.Arch, err)
	}
	if prog.OutSize() != len(d.Meta.Classes) {
		return nil, fmt.Errorf("model: network gives %d scores for %d classes", prog.OutSize(), len(d.Meta.Classes))
	}
	c := &Classifier{dec: d, Predictor: infer.NewPredictor(prog)}
	c.info = Info{
		Name: name, Arch: d.Meta.Arch, Classes: d.Meta.Classes,
		Mean: d.Meta.Mean, Std: d.Meta.Std, SHA256: d.SHA256, Source: source,
		TestAccuracy: d.Meta.TestAccuracy, Params: params,
	}
	return c, nil
}

// Info describes the loaded model.
func (c *Classifier) Info() Info { return c.info }

// Meta returns the model file's metadata.
func (c *Classifier) Meta() Meta { return c.dec.Meta }

// Decoded returns the model file the classifier was built from, for
// exporting it in another format.
func (c *Classifier) Decoded() *Decoded { return c.dec }

// Logits runs the network on n normalised images x ([n,1,28,28], which is
// also NHWC with one channel) and returns n×classes raw scores.
func (c *Classifier) Logits(x []float32, n int) ([]float32, error) {
	if n < 0 || len(x) != n*Pixels {
		return nil, fmt.Errorf("model: got %d input values for %d images of %d pixels", len(x), n, Pixels)
	}
	return c.Predictor.Logits(x, n)
}

// Predict returns n×classes probabilities (row-major) for n normalised
// images x laid out as [n,1,28,28].
func (c *Classifier) Predict(x []float32, n int) ([]float32, error) {
	if n < 0 || len(x) != n*Pixels {
		return nil, fmt.Errorf("model: got %d input values for %d images of %d pixels", len(x), n, Pixels)
	}
	return c.Predictor.Predict(x, n)
}

// DefaultName is the serving name of the embedded model.
const DefaultName = "fashion-mnist"

// Embedded returns a classifier for the model embedded in the binary.
// Model files are opened by package predictor, which also reads ONNX.
func Embedded() (*Classifier, error) {
	d, err := Decode(shipped.Weights)
	if err != nil {
		return nil, fmt.Errorf("embedded model: %w", err)
	}
	return New(d, DefaultName, "embedded")
}
