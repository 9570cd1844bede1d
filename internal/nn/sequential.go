package nn

import "strconv"

// Sequential runs layers one after another. It is itself a Layer, so
// networks nest (a residual block's body is a Sequential).
type Sequential struct {
	Layers []Layer
	// Names label the layers in parameter names ("features.3.weight");
	// the layer's index is used where a name is empty or missing.
	Names []string
}

// NewSequential returns the chain of layers.
func NewSequential(layers ...Layer) *Sequential { return &Sequential{Layers: layers} }

// Add appends a named layer and returns it, for builders.
func (s *Sequential) Add(name string, l Layer) Layer {
	for len(s.Names) < len(s.Layers) {
		s.Names = append(s.Names, "")
	}
	s.Layers = append(s.Layers, l)
	s.Names = append(s.Names, name)
	return l
}

func (s *Sequential) name(i int) string {
	if i < len(s.Names) && s.Names[i] != "" {
		return s.Names[i]
	}
	return strconv.Itoa(i)
}

// Forward runs every layer in order.
func (s *Sequential) Forward(x *Tensor, train bool) *Tensor {
	for _, l := range s.Layers {
		x = l.Forward(x, train)
	}
	return x
}

// Backward runs every layer's backward pass in reverse order.
func (s *Sequential) Backward(dy *Tensor) *Tensor {
	for i := len(s.Layers) - 1; i >= 0; i-- {
		dy = s.Layers[i].Backward(dy)
	}
	return dy
}

// Params returns the parameters of all layers, renamed with their
// position: "<layer name>.<param name>". The returned Params are shared
// with the layers, so optimisers update the network in place.
func (s *Sequential) Params() []*Param {
	var ps []*Param
	for i, l := range s.Layers {
		for _, p := range l.Params() {
			q := *p
			q.Name = s.name(i) + "." + p.Name
			// Shallow copy: Value and Grad still alias the layer's slices.
			ps = append(ps, &q)
		}
	}
	return ps
}
