package nn

import "math"

// FoldBatchNorm returns a copy of s for inference in which every
// convolution followed by a batch norm is replaced by one convolution with
// the normalisation folded into its weights and bias:
//
//	W' = W·γ/√(σ²+ε) per output channel,  b' = β + (b − μ)·γ/√(σ²+ε)
//
// (a fused ReLU moves into the convolution). This removes a pass over
// every activation tensor. Parameters are copied, so s is unchanged; the
// result is only valid in inference mode. Residual blocks and nested
// Sequentials are folded too.
func FoldBatchNorm(s *Sequential) *Sequential {
	out := &Sequential{}
	for i := 0; i < len(s.Layers); i++ {
		name := s.name(i)
		switch l := s.Layers[i].(type) {
		case *Conv2D:
			if i+1 < len(s.Layers) {
				if bn, ok := s.Layers[i+1].(*BatchNorm); ok && bn.C == l.Out {
					out.Add(name, foldConv(l, bn))
					i++
					continue
				}
			}
			out.Add(name, l)
		case *Sequential:
			out.Add(name, FoldBatchNorm(l))
		case *Residual:
			out.Add(name, NewResidual(FoldBatchNorm(l.Body)))
		default:
			out.Add(name, l)
		}
	}
	return out
}

func foldConv(c *Conv2D, bn *BatchNorm) *Conv2D {
	f := &Conv2D{In: c.In, Out: c.Out, K: c.K, Stride: c.Stride, Pad: c.Pad, NoInputGrad: true, ReLU: bn.ReLU}
	f.W = newParam("weight", Weight, c.W.Shape...)
	f.B = newParam("bias", NoDecay, c.Out)
	for o := range c.Out {
		scale := float64(bn.Gamma.Value[o]) / math.Sqrt(float64(bn.RunVar.Value[o])+float64(bn.Eps))
		b := 0.0
		if c.B != nil {
			b = float64(c.B.Value[o])
		}
		f.B.Value[o] = float32(float64(bn.Beta.Value[o]) + (b-float64(bn.RunMean.Value[o]))*scale)
		for r := 0; r < len(c.W.Value)/c.Out; r++ {
			f.W.Value[r*c.Out+o] = float32(float64(c.W.Value[r*c.Out+o]) * scale)
		}
	}
	return f
}
