package nn

import (
	"fmt"
	"math"
)

// BatchNorm normalises each channel over the batch and spatial positions
// (Ioffe & Szegedy 2015). In training it uses the batch's statistics and
// updates running averages; in inference it uses the running averages.
type BatchNorm struct {
	C        int
	Eps      float32
	Momentum float32 // weight of the new batch in the running averages

	Gamma, Beta     *Param
	RunMean, RunVar *Param

	xhat, out, dx *Tensor
	invStd        []float32
	mean, sum     []float64
}

// NewBatchNorm returns a batch norm over c channels with PyTorch's defaults
// (eps 1e-5, momentum 0.1), scale 1 and shift 0.
func NewBatchNorm(c int) *BatchNorm {
	b := &BatchNorm{C: c, Eps: 1e-5, Momentum: 0.1,
		Gamma:   newParam("weight", NoDecay, c),
		Beta:    newParam("bias", NoDecay, c),
		RunMean: newParam("running_mean", Buffer, c),
		RunVar:  newParam("running_var", Buffer, c),
		invStd:  make([]float32, c),
		mean:    make([]float64, c),
		sum:     make([]float64, c),
	}
	for i := range c {
		b.Gamma.Value[i] = 1
		b.RunVar.Value[i] = 1
	}
	return b
}

// Params returns scale, shift and the running statistics.
func (b *BatchNorm) Params() []*Param {
	return []*Param{b.Gamma, b.Beta, b.RunMean, b.RunVar}
}

// Forward normalises x per channel.
func (b *BatchNorm) Forward(x *Tensor, train bool) *Tensor {
	if x.C != b.C {
		panic(fmt.Sprintf("nn: BatchNorm over %d channels got %v", b.C, x))
	}
	out := reuse(&b.out, x.N, x.H, x.W, x.C)
	c := b.C
	if !train {
		scale, shift := make([]float32, c), make([]float32, c)
		for i := range c {
			inv := float32(1 / math.Sqrt(float64(b.RunVar.Value[i]+b.Eps)))
			scale[i] = b.Gamma.Value[i] * inv
			shift[i] = b.Beta.Value[i] - b.RunMean.Value[i]*scale[i]
		}
		affine(out.Data, x.Data, scale, shift)
		return out
	}
	rows := len(x.Data) / c
	// Two passes in float64: exact enough for 100k-row batches, where a
	// one-pass float32 variance loses digits to cancellation.
	clear(b.mean)
	for off := 0; off < len(x.Data); off += c {
		row := x.Data[off : off+c]
		for i, v := range row {
			b.mean[i] += float64(v)
		}
	}
	for i := range b.mean {
		b.mean[i] /= float64(rows)
	}
	clear(b.sum)
	for off := 0; off < len(x.Data); off += c {
		row := x.Data[off : off+c]
		for i, v := range row {
			d := float64(v) - b.mean[i]
			b.sum[i] += d * d
		}
	}
	m := b.Momentum
	for i := range c {
		v := b.sum[i] / float64(rows)
		b.invStd[i] = float32(1 / math.Sqrt(v+float64(b.Eps)))
		unbiased := v * float64(rows) / float64(max(rows-1, 1))
		b.RunMean.Value[i] = (1-m)*b.RunMean.Value[i] + m*float32(b.mean[i])
		b.RunVar.Value[i] = (1-m)*b.RunVar.Value[i] + m*float32(unbiased)
	}
	xhat := reuse(&b.xhat, x.N, x.H, x.W, x.C)
	mean32 := make([]float32, c)
	for i := range c {
		mean32[i] = float32(b.mean[i])
	}
	g, be, inv := b.Gamma.Value, b.Beta.Value, b.invStd
	parallelFor(rows, 4096, func(lo, hi int) {
		for off := lo * c; off < hi*c; off += c {
			xr, hr, or := x.Data[off:off+c], xhat.Data[off:off+c], out.Data[off:off+c]
			for i := range xr {
				h := (xr[i] - mean32[i]) * inv[i]
				hr[i] = h
				or[i] = h*g[i] + be[i]
			}
		}
	})
	return out
}

// Backward returns the input gradient of a training-mode Forward.
func (b *BatchNorm) Backward(dy *Tensor) *Tensor {
	c := b.C
	xhat := b.xhat
	rows := len(dy.Data) / c
	dg, db := b.Gamma.Grad, b.Beta.Grad
	sg, sb := make([]float64, c), make([]float64, c)
	for off := 0; off < len(dy.Data); off += c {
		d, h := dy.Data[off:off+c], xhat.Data[off:off+c]
		for i := range d {
			sb[i] += float64(d[i])
			sg[i] += float64(d[i] * h[i])
		}
	}
	k1, k2, k3 := make([]float32, c), make([]float32, c), make([]float32, c)
	for i := range c {
		dg[i], db[i] = float32(sg[i]), float32(sb[i])
		// dx = γ·invStd·(dy − mean(dy) − x̂·mean(dy·x̂))
		k1[i] = b.Gamma.Value[i] * b.invStd[i]
		k2[i] = float32(sb[i] / float64(rows))
		k3[i] = float32(sg[i] / float64(rows))
	}
	dx := reuse(&b.dx, dy.N, dy.H, dy.W, dy.C)
	parallelFor(rows, 4096, func(lo, hi int) {
		for off := lo * c; off < hi*c; off += c {
			d, h, o := dy.Data[off:off+c], xhat.Data[off:off+c], dx.Data[off:off+c]
			for i := range d {
				o[i] = k1[i] * (d[i] - k2[i] - h[i]*k3[i])
			}
		}
	})
	return dx
}

// affine sets dst = src·scale + shift per channel (rows of len(scale)).
func affine(dst, src, scale, shift []float32) {
	c := len(scale)
	parallelFor(len(src)/c, 4096, func(lo, hi int) {
		for off := lo * c; off < hi*c; off += c {
			s, d := src[off:off+c], dst[off:off+c]
			for i := range s {
				d[i] = s[i]*scale[i] + shift[i]
			}
		}
	})
}
