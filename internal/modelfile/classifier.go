package modelfile

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/nn"
	"github.com/fashion-classifier/fashion/internal/ood"
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
	detector *ood.Detector // nil when the model file has none
}

// New builds a classifier from a decoded model file.
func New(d *Decoded, name, source string) (*Classifier, error) {
	if d.Meta.Arch == ArchONNX {
		return nil, fmt.Errorf("model: %s is a quantized ONNX model; package predictor opens it", source)
	}
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
	if prog, err = Int8Program(prog, d); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if prog.OutSize() != len(d.Meta.Classes) {
		return nil, fmt.Errorf("model: network gives %d scores for %d classes", prog.OutSize(), len(d.Meta.Classes))
	}
	c := &Classifier{dec: d, Predictor: infer.NewPredictor(prog)}
	c.Predictor.SetTemperature(d.Meta.Temperature)
	if d.Meta.OOD != "" {
		norm, err := ood.UnmarshalNorm(d.Meta.OOD)
		if err != nil {
			return nil, err
		}
		if c.detector, err = ood.FromTensors(d.Extra, norm, len(d.Meta.Classes)); err != nil {
			return nil, err
		}
	}
	c.info = Info{
		Name: name, Arch: d.Meta.Arch, Classes: d.Meta.Classes,
		Mean: d.Meta.Mean, Std: d.Meta.Std, SHA256: d.SHA256, Source: source,
		TestAccuracy: d.Meta.TestAccuracy, Params: params, Precision: PrecisionFloat32,
		Storage: StorageF32, Temperature: d.Meta.Temperature,
	}
	if d.Meta.Precision != "" {
		c.info.Precision = d.Meta.Precision
	}
	if d.Meta.Storage != "" {
		c.info.Storage = d.Meta.Storage
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
// images x laid out as [n,1,28,28], at the model's calibrated temperature.
func (c *Classifier) Predict(x []float32, n int) ([]float32, error) {
	probs, _, err := c.Scores(x, n)
	return probs, err
}

// Scores returns Predict's probabilities and, when the model has an
// out-of-distribution detector, each image's score (higher: less like the
// training data; see InDistribution); ood is nil otherwise.
func (c *Classifier) Scores(x []float32, n int) (probs []float32, oodScores []float64, err error) {
	logits, err := c.Logits(x, n)
	if err != nil {
		return nil, nil, err
	}
	k := len(c.info.Classes)
	if c.detector != nil {
		oodScores = make([]float64, n)
		pix := make([]uint8, Pixels)
		for r := range n {
			// The detector wants the 8-bit input: undo Normalize.
			for i, v := range x[r*Pixels : (r+1)*Pixels] {
				pix[i] = uint8(math.Round(min(max((float64(v)*float64(c.info.Std)+float64(c.info.Mean))*255, 0), 255)))
			}
			oodScores[r] = c.detector.Score(pix, logits[r*k:(r+1)*k])
		}
	}
	c.Predictor.Softmax(logits, n)
	return logits, oodScores, nil
}

// HasOOD reports whether the model has an out-of-distribution detector.
func (c *Classifier) HasOOD() bool { return c.detector != nil }

// InDistribution reports whether an out-of-distribution score from Scores
// is within the model's threshold, and whether the model has a detector
// at all (ok false: no answer).
func (c *Classifier) InDistribution(score float64) (in, ok bool) {
	if c.detector == nil {
		return false, false
	}
	return c.detector.InDistribution(score), true
}

// DefaultName is the serving name of the embedded benchmark model, and of
// any model file opened without a name.
const DefaultName = "fashion-mnist"

// PhotoName is the serving name of the embedded photo model.
const PhotoName = "fashion-photos"

// Embedded returns a classifier for the benchmark model embedded in the
// binary. Model files are opened by package predictor, which also reads
// ONNX and pairs this model with EmbeddedPhoto's.
func Embedded() (*Classifier, error) {
	d, err := Decode(shipped.Weights)
	if err != nil {
		return nil, fmt.Errorf("embedded model: %w", err)
	}
	return New(d, DefaultName, "embedded")
}

// EmbeddedPhoto returns a classifier for the photo model embedded in the
// binary, named PhotoName.
func EmbeddedPhoto() (*Classifier, error) {
	d, err := Decode(shipped.PhotoWeights)
	if err != nil {
		return nil, fmt.Errorf("embedded photo model: %w", err)
	}
	return New(d, PhotoName, "embedded")
}
