// Package nn provides the layers, losses and parameters of the training
// engine: each layer computes a forward pass and, from the output gradient,
// the input gradient and its parameters' gradients.
//
// Activations are float32 tensors in NHWC layout (batch, height, width,
// channels). Channels are innermost so that a 3×3 convolution becomes one
// large matrix product (im2col rows are contiguous copies of C values), and
// per-channel layers such as batch norm run over contiguous memory.
package nn

import "fmt"

// Tensor is a batch of feature maps in NHWC layout. Fully connected layers
// use H = W = 1.
type Tensor struct {
	N, H, W, C int
	Data       []float32
}

// NewTensor allocates a zeroed tensor of the given shape.
func NewTensor(n, h, w, c int) *Tensor {
	return &Tensor{N: n, H: h, W: w, C: c, Data: make([]float32, n*h*w*c)}
}

// Len is the number of values in the tensor.
func (t *Tensor) Len() int { return t.N * t.H * t.W * t.C }

// Shape returns the dimensions as [N, H, W, C].
func (t *Tensor) Shape() [4]int { return [4]int{t.N, t.H, t.W, t.C} }

// String describes the shape, for error messages.
func (t *Tensor) String() string {
	return fmt.Sprintf("[N=%d H=%d W=%d C=%d]", t.N, t.H, t.W, t.C)
}

// reuse returns *buf reshaped to n×h×w×c, reallocating only when it is too
// small, so that layers do not allocate on every batch of the same size.
// The contents are not cleared.
func reuse(buf **Tensor, n, h, w, c int) *Tensor {
	size := n * h * w * c
	t := *buf
	if t == nil || cap(t.Data) < size {
		t = &Tensor{Data: make([]float32, size)}
		*buf = t
	}
	t.N, t.H, t.W, t.C = n, h, w, c
	t.Data = t.Data[:size]
	return t
}

// ParamKind says how the optimiser treats a parameter.
type ParamKind int

const (
	// Weight is trained and subject to weight decay.
	Weight ParamKind = iota
	// NoDecay is trained without weight decay (biases, batch-norm scales).
	NoDecay
	// Buffer is state saved with the model but not trained (batch-norm
	// running statistics).
	Buffer
)

// Param is a named tensor of a layer with its gradient.
type Param struct {
	Name  string
	Shape []int
	Kind  ParamKind
	Value []float32
	Grad  []float32 // nil for buffers
}

func newParam(name string, kind ParamKind, shape ...int) *Param {
	n := 1
	for _, d := range shape {
		n *= d
	}
	p := &Param{Name: name, Shape: shape, Kind: kind, Value: make([]float32, n)}
	if kind != Buffer {
		p.Grad = make([]float32, n)
	}
	return p
}

// Layer is one differentiable step of a network.
//
// Forward may keep references to x and to its own output until the next
// Forward; Backward must follow the Forward it differentiates. The returned
// tensors are owned by the layer and overwritten by its next call.
// Backward overwrites (does not accumulate) the parameters' gradients.
type Layer interface {
	Forward(x *Tensor, train bool) *Tensor
	Backward(dy *Tensor) *Tensor
	Params() []*Param
}
