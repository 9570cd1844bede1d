package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fashion-classifier/fashion/internal/kernels"
)

// convRef is the direct convolution: out[n,y,x,o] = b[o] + Σ x[n, y·s+ky−p,
// x·s+kx−p, i]·W[ky,kx,i,o] over the kernel and input channels, zero
// outside the image, with the optional ReLU.
func convRef(c *Conv2D, x *Tensor) *Tensor {
	oh, ow := (x.H+2*c.Pad-c.K)/c.Stride+1, (x.W+2*c.Pad-c.K)/c.Stride+1
	out := NewTensor(x.N, oh, ow, c.Out)
	for n := range x.N {
		for y := range oh {
			for xx := range ow {
				for o := range c.Out {
					var s float64
					if c.B != nil {
						s = float64(c.B.Value[o])
					}
					for ky := range c.K {
						for kx := range c.K {
							iy, ix := y*c.Stride+ky-c.Pad, xx*c.Stride+kx-c.Pad
							if iy < 0 || iy >= x.H || ix < 0 || ix >= x.W {
								continue
							}
							for i := range c.In {
								s += float64(x.Data[((n*x.H+iy)*x.W+ix)*x.C+i]) * float64(c.W.Value[((ky*c.K+kx)*c.In+i)*c.Out+o])
							}
						}
					}
					if c.ReLU {
						s = max(s, 0)
					}
					out.Data[((n*oh+y)*ow+xx)*c.Out+o] = float32(s)
				}
			}
		}
	}
	return out
}

// convGradRef returns the weight and input gradients of the direct
// convolution (without ReLU) for output gradient dy.
func convGradRef(c *Conv2D, x, dy *Tensor) (dw, dx []float32) {
	dw64, dx64 := make([]float64, len(c.W.Value)), make([]float64, len(x.Data))
	for n := range dy.N {
		for y := range dy.H {
			for xx := range dy.W {
				for ky := range c.K {
					for kx := range c.K {
						iy, ix := y*c.Stride+ky-c.Pad, xx*c.Stride+kx-c.Pad
						if iy < 0 || iy >= x.H || ix < 0 || ix >= x.W {
							continue
						}
						for i := range c.In {
							xi := ((n*x.H+iy)*x.W+ix)*x.C + i
							for o := range c.Out {
								g := float64(dy.Data[((n*dy.H+y)*dy.W+xx)*dy.C+o])
								wi := ((ky*c.K+kx)*c.In+i)*c.Out + o
								dw64[wi] += g * float64(x.Data[xi])
								dx64[xi] += g * float64(c.W.Value[wi])
							}
						}
					}
				}
			}
		}
	}
	dw, dx = make([]float32, len(dw64)), make([]float32, len(dx64))
	for i, v := range dw64 {
		dw[i] = float32(v)
	}
	for i, v := range dx64 {
		dx[i] = float32(v)
	}
	return dw, dx
}

func assertClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); !(d <= tol*math.Max(1, math.Abs(float64(want[i])))) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestConvPathsMatchReference runs every way of computing a convolution
// (im2col, padded layout; one chunk or many) on odd sizes and compares
// the output and both gradients with the direct convolution.
func TestConvPathsMatchReference(t *testing.T) {
	cases := []struct {
		n, h, w, in, out, k, stride, pad int
		bias, relu                       bool
	}{
		{5, 7, 9, 3, 5, 3, 1, 1, false, false},
		{6, 11, 5, 9, 7, 3, 1, 1, true, false},
		{4, 6, 6, 8, 16, 3, 1, 1, false, true},
		{3, 9, 8, 4, 3, 5, 1, 2, true, true},
		{2, 1, 1, 3, 2, 3, 1, 1, false, false},   // every tap but the centre overhangs
		{7, 13, 13, 2, 33, 3, 1, 1, true, false}, // more output channels than a register tile
		{3, 9, 7, 2, 3, 3, 2, 1, true, false},    // strided: im2col only
		// Winograd with ConvAuto: F(4×4) on odd channel counts (Go
		// transforms) and on multiples of 8 (assembly), F(2×2) on a
		// single image; the first layer's direct kernel.
		{5, 13, 11, 9, 10, 3, 1, 1, true, true},
		{4, 14, 14, 16, 8, 3, 1, 1, false, false},
		{1, 7, 9, 16, 24, 3, 1, 1, true, false},
		{3, 10, 9, 1, 32, 3, 1, 1, true, true},
	}
	for _, tc := range cases {
		for _, path := range []kernels.ConvPath{kernels.ConvAuto, kernels.ConvIm2col, kernels.ConvPadded} {
			for _, chunk := range []int{0, 1, 2} {
				name := fmt.Sprintf("n%d_%dx%d_%d-%d_k%ds%dp%d_path%d_chunk%d", tc.n, tc.h, tc.w, tc.in, tc.out, tc.k, tc.stride, tc.pad, path, chunk)
				t.Run(name, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(tc.n*tc.h), uint64(tc.in)))
					c := NewConv2D(rng, tc.in, tc.out, tc.k, tc.stride, tc.pad, tc.bias)
					if tc.bias {
						for i := range c.B.Value {
							c.B.Value[i] = float32(rng.NormFloat64())
						}
					}
					c.ReLU, c.path, c.maxChunk = tc.relu, path, chunk
					x := randTensor(rng, tc.n, tc.h, tc.w, tc.in)
					got := c.Forward(x, true)
					want := convRef(c, x)
					assertClose(t, "output", got.Data, want.Data, 1e-4)

					dy := randTensor(rng, got.N, got.H, got.W, got.C)
					masked := NewTensor(dy.N, dy.H, dy.W, dy.C)
					for i, d := range dy.Data {
						if !c.ReLU || want.Data[i] > 0 {
							masked.Data[i] = d
						}
					}
					wantDW, wantDX := convGradRef(c, x, masked)
					// The automatic path takes the Winograd weight gradient on
					// 28×28 and 14×14 maps: its transforms scale float32 rounding
					// (a weight gradient sums n·H·W products), so it is held to
					// 5e-4 instead of 1e-4; measured worst 2.7e-4 at n4 14×14
					// over repeated runs, whose parallel reduction order varies.
					dwTol := 1e-4
					if path == kernels.ConvAuto {
						dwTol = 5e-4
					}
					dx := c.Backward(dy)
					assertClose(t, "weight gradient", c.W.Grad, wantDW, dwTol)
					assertClose(t, "input gradient", dx.Data, wantDX, 1e-4)
					// A second pass must not accumulate onto the first.
					c.Forward(x, true)
					dx = c.Backward(dy)
					assertClose(t, "weight gradient, second pass", c.W.Grad, wantDW, dwTol)
					assertClose(t, "input gradient, second pass", dx.Data, wantDX, 1e-4)
				})
			}
		}
	}
}
