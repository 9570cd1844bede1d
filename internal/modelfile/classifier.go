package modelfile

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/nn"
	shipped "github.com/fashion-classifier/fashion/model"
)

// maxChunk bounds how many images one forward pass takes, so memory stays
// flat for large requests.
const maxChunk = 256

// Classifier is a trained network ready for inference. It is safe for
// concurrent use: each concurrent call gets its own copy of the network's
// buffers from a pool, sharing nothing mutable.
type Classifier struct {
	info Info
	arch arch.Arch
	dec  *Decoded
	// nets holds idle networks with the weights loaded. It is a bounded
	// free list rather than a sync.Pool: the garbage collector empties a
	// sync.Pool, and rebuilding a network (weights and activation buffers)
	// after every collection is exactly the churn a busy server must avoid.
	nets chan *nn.Sequential
}

// New builds a classifier from a decoded model file.
func New(d *Decoded, name, source string) (*Classifier, error) {
	a, err := arch.LookupArch(d.Meta.Arch)
	if err != nil {
		return nil, err
	}
	c := &Classifier{arch: a, dec: d}
	net, err := c.build()
	if err != nil {
		return nil, err
	}
	params := 0
	for _, p := range a.Build(rand.New(rand.NewPCG(0, 0)), len(d.Meta.Classes)).Params() {
		if p.Kind != nn.Buffer {
			params += len(p.Value)
		}
	}
	c.nets = make(chan *nn.Sequential, runtime.GOMAXPROCS(0))
	c.nets <- net
	c.info = Info{
		Name: name, Arch: d.Meta.Arch, Classes: d.Meta.Classes,
		Mean: d.Meta.Mean, Std: d.Meta.Std, SHA256: d.SHA256, Source: source,
		TestAccuracy: d.Meta.TestAccuracy, Params: params,
	}
	return c, nil
}

// build returns a network with the model's weights, in the form used for
// inference: batch norms folded into the convolutions before them.
func (c *Classifier) build() (*nn.Sequential, error) {
	net := c.arch.Build(rand.New(rand.NewPCG(0, 0)), len(c.dec.Meta.Classes))
	if err := Load(net, c.dec.Weights); err != nil {
		return nil, err
	}
	return nn.FoldBatchNorm(net), nil
}

// Info describes the loaded model.
func (c *Classifier) Info() Info { return c.info }

// Meta returns the model file's metadata.
func (c *Classifier) Meta() Meta { return c.dec.Meta }

// Logits runs the network on n normalised images x ([n,1,28,28], which is
// also NHWC with one channel) and returns n×classes raw scores.
func (c *Classifier) Logits(x []float32, n int) ([]float32, error) {
	if n < 0 || len(x) != n*Pixels {
		return nil, fmt.Errorf("model: got %d input values for %d images of %d pixels", len(x), n, Pixels)
	}
	var net *nn.Sequential
	select {
	case net = <-c.nets:
	default:
		var err error
		if net, err = c.build(); err != nil {
			return nil, err
		}
	}
	defer func() {
		select {
		case c.nets <- net:
		default: // more concurrent callers than CPUs: let this one go
		}
	}()
	k := len(c.info.Classes)
	out := make([]float32, n*k)
	for n0 := 0; n0 < n; n0 += maxChunk {
		n1 := min(n0+maxChunk, n)
		in := &nn.Tensor{N: n1 - n0, H: Side, W: Side, C: 1, Data: x[n0*Pixels : n1*Pixels]}
		y := net.Forward(in, false)
		copy(out[n0*k:n1*k], y.Data)
	}
	return out, nil
}

// Predict returns n×classes probabilities (row-major) for n normalised
// images x laid out as [n,1,28,28].
func (c *Classifier) Predict(x []float32, n int) ([]float32, error) {
	out, err := c.Logits(x, n)
	if err != nil {
		return nil, err
	}
	k := len(c.info.Classes)
	for r := 0; r < n; r++ {
		row := out[r*k : (r+1)*k]
		eval.Softmax(row, row)
	}
	return out, nil
}

// DefaultName is the serving name of the embedded model.
const DefaultName = "fashion-mnist"

// Open loads the model at path; an empty path means the file named by the
// WEIGHT_PATH environment variable (looked up with getenv) or, when that is
// unset, the model embedded in the binary.
func Open(path string, getenv func(string) string) (*Classifier, error) {
	if path == "" && getenv != nil {
		path = getenv("WEIGHT_PATH")
	}
	if path == "" {
		d, err := Decode(shipped.Weights)
		if err != nil {
			return nil, fmt.Errorf("embedded model: %w", err)
		}
		return New(d, DefaultName, "embedded")
	}
	if strings.HasSuffix(strings.ToLower(path), ".onnx") {
		return nil, fmt.Errorf("%s: an ONNX model: load it with package onnx (the fashion commands do)", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading model: %w", err)
	}
	d, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return New(d, DefaultName, path)
}
