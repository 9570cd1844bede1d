package kernels

import (
	"math"

	"github.com/fashion-classifier/fashion/internal/parallel"
)

// PoolShape is the geometry of a 2-D pooling window over NHWC images.
type PoolShape struct {
	C, H, W        int // channels and input size
	OH, OW         int // output size
	KH, KW         int // window size
	SH, SW         int // strides
	DH, DW         int // dilations (1 for none; max pooling only)
	PT, PL, PB, PR int // padding (top, left, bottom, right)
}

// SquarePool is the shape of a k×k window moved by stride without padding
// over h×w images of c channels.
func SquarePool(c, h, w, k, stride int) PoolShape {
	return PoolShape{C: c, H: h, W: w, OH: (h-k)/stride + 1, OW: (w-k)/stride + 1, KH: k, KW: k, SH: stride, SW: stride, DH: 1, DW: 1}
}

// plain2x2 reports whether the pool is a 2×2, stride-2 window without
// padding or dilation, which has a vectorised kernel.
func (s PoolShape) plain2x2() bool {
	return s.KH == 2 && s.KW == 2 && s.SH == 2 && s.SW == 2 && s.DH == 1 && s.DW == 1 &&
		s.PT == 0 && s.PL == 0 && 2*s.OH <= s.H && 2*s.OW <= s.W
}

// Overlapping reports whether windows share input pixels.
func (s PoolShape) Overlapping() bool {
	return (s.KH-1)*s.DH+1 > s.SH || (s.KW-1)*s.DW+1 > s.SW
}

// MaxPool sets y (n×OH×OW×C) to the maximum of each window of x. When arg
// is not nil it receives, for each output, the index into x of the
// maximum (the first one on ties), for MaxPoolBackward. A window entirely
// in the padding gives −∞ (and arg −1).
func MaxPool(y []float32, arg []int32, x []float32, n int, s PoolShape) {
	c := s.C
	if s.plain2x2() {
		parallel.For(n*s.OH, 8, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				b, oy := r/s.OH, r%s.OH
				o := r * s.OW * c
				top := ((b*s.H + 2*oy) * s.W) * c
				var a []int32
				if arg != nil {
					a = arg[o : o+s.OW*c]
				}
				MaxPool2x2Row(y[o:o+s.OW*c], a, x[top:top+2*s.OW*c], x[top+s.W*c:top+s.W*c+2*s.OW*c], s.OW, c, top, top+s.W*c)
			}
		})
		return
	}
	parallel.For(n*s.OH, 1, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			b, oy := r/s.OH, r%s.OH
			for ox := range s.OW {
				o := ((b*s.OH+oy)*s.OW + ox) * c
				dst := y[o : o+c]
				for j := range dst {
					dst[j] = float32(math.Inf(-1))
				}
				var at []int32
				if arg != nil {
					at = arg[o : o+c]
					for j := range at {
						at[j] = -1
					}
				}
				for ky := range s.KH {
					iy := oy*s.SH - s.PT + ky*s.DH
					if iy < 0 || iy >= s.H {
						continue
					}
					for kx := range s.KW {
						ix := ox*s.SW - s.PL + kx*s.DW
						if ix < 0 || ix >= s.W {
							continue
						}
						i := ((b*s.H+iy)*s.W + ix) * c
						src := x[i : i+c]
						if at == nil {
							for j, v := range src {
								dst[j] = max(dst[j], v)
							}
							continue
						}
						for j, v := range src {
							if v > dst[j] || at[j] < 0 {
								dst[j], at[j] = v, int32(i+j)
							}
						}
					}
				}
			}
		}
	})
}

// MaxPoolBackward sets dx (n images of inPer values) to the output
// gradient dy (n images of outPer values) routed to the inputs that were
// the maxima, as recorded in arg by MaxPool.
func MaxPoolBackward(dx, dy []float32, arg []int32, n, inPer, outPer int, overlapping bool) {
	if overlapping {
		clear(dx)
		for i, d := range dy {
			if a := arg[i]; a >= 0 {
				dx[a] += d
			}
		}
		return
	}
	// Windows do not overlap, so images own disjoint parts of dx and can be
	// cleared and scattered in parallel, each image's part while it is in
	// cache. (Clearing all of dx first, on one goroutine, took as long as
	// the rest of the pass.)
	parallel.For(n, 8, func(lo, hi int) {
		clear(dx[lo*inPer : hi*inPer])
		for i := lo * outPer; i < hi*outPer; i++ {
			if a := arg[i]; a >= 0 {
				dx[a] += dy[i]
			}
		}
	})
}

// AvgPool sets y to the mean of each window of x: over the pixels inside
// the image, or with includePad over the window clipped to the padded
// image, as PyTorch counts it.
func AvgPool(y, x []float32, n int, s PoolShape, includePad bool) {
	c := s.C
	parallel.For(n*s.OH, 1, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			b, oy := r/s.OH, r%s.OH
			for ox := range s.OW {
				dst := y[((b*s.OH+oy)*s.OW+ox)*c:][:c]
				clear(dst)
				count := 0
				for ky := range s.KH {
					iy := oy*s.SH - s.PT + ky
					if iy < 0 || iy >= s.H {
						continue
					}
					for kx := range s.KW {
						ix := ox*s.SW - s.PL + kx
						if ix < 0 || ix >= s.W {
							continue
						}
						count++
						for j, v := range x[((b*s.H+iy)*s.W+ix)*c:][:c] {
							dst[j] += v
						}
					}
				}
				if includePad {
					y0, x0 := oy*s.SH-s.PT, ox*s.SW-s.PL
					y1 := min(y0+s.KH, s.H+s.PB)
					x1 := min(x0+s.KW, s.W+s.PR)
					count = (y1 - max(y0, -s.PT)) * (x1 - max(x0, -s.PL))
				}
				if count > 0 {
					inv := 1 / float32(count)
					for j := range dst {
						dst[j] *= inv
					}
				}
			}
		}
	})
}

// GlobalAvgPool sets y (n×C) to the mean of each channel of x over its hw
// positions.
func GlobalAvgPool(y, x []float32, n, hw, c int) {
	inv := 1 / float32(hw)
	parallel.For(n, 64, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			dst := y[b*c : (b+1)*c]
			clear(dst)
			for p := range hw {
				for j, v := range x[(b*hw+p)*c:][:c] {
					dst[j] += v
				}
			}
			for j := range dst {
				dst[j] *= inv
			}
		}
	})
}

// GlobalAvgPoolBackward spreads each gradient of dy (n×C) evenly over the
// hw positions it averaged, into dx.
func GlobalAvgPoolBackward(dx, dy []float32, n, hw, c int) {
	inv := 1 / float32(hw)
	parallel.For(n, 64, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			d := dy[b*c : (b+1)*c]
			for p := range hw {
				o := dx[(b*hw+p)*c:][:c]
				for j := range o {
					o[j] = d[j] * inv
				}
			}
		}
	})
}

// ScaleChannels sets y = x·g per image and channel: x and y are n images
// of hw positions of c channels, g holds c gates per image (a
// squeeze-and-excitation block's output).
func ScaleChannels(y, x, g []float32, n, hw, c int) {
	parallel.For(n, max(1, (1<<15)/max(hw*c, 1)), func(lo, hi int) {
		for b := lo; b < hi; b++ {
			gb := g[b*c : (b+1)*c]
			for p := range hw {
				o := (b*hw + p) * c
				src, dst := x[o:o+c], y[o:o+c]
				for j := range dst {
					dst[j] = src[j] * gb[j]
				}
			}
		}
	})
}

// ScaleChannelsBackward is the gradient of ScaleChannels: dx = dy·g and
// dg (n×c, overwritten) = Σ over positions of dy·x, images split between
// workers.
func ScaleChannelsBackward(dx, dg, dy, x, g []float32, n, hw, c int) {
	parallel.For(n, max(1, (1<<15)/max(hw*c, 1)), func(lo, hi int) {
		for b := lo; b < hi; b++ {
			gb, gd := g[b*c:(b+1)*c], dg[b*c:(b+1)*c]
			clear(gd)
			for p := range hw {
				o := (b*hw + p) * c
				d, src, dst := dy[o:o+c], x[o:o+c], dx[o:o+c]
				for j := range d {
					dst[j] = d[j] * gb[j]
					gd[j] += d[j] * src[j]
				}
			}
		}
	})
}

// AddParallel is Add split between workers.
func AddParallel(y, a, b []float32, relu bool) {
	parallel.For(len(y), actMinPer, func(lo, hi int) {
		Add(y[lo:hi], a[lo:hi], b[lo:hi], relu)
	})
}

// MaxPoolU8 sets y to the maximum of each window of the n maps of uint8
// codes x: the max pool of an int8 network, whose codes order as the
// values they stand for. Every window must lie inside the map (no
// padding). A 2×2 window of stride 2 over channels in multiples of 32
// runs a vector kernel over whole output rows.
func MaxPoolU8(y, x []uint8, n int, s PoolShape) {
	c := s.C
	parallel.For(n*s.OH, 8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			b, oy := r/s.OH, r%s.OH
			out := y[r*s.OW*c : (r+1)*s.OW*c]
			if s.plain2x2() {
				top := (b*s.H + 2*oy) * s.W * c
				maxPool2x2U8Row(out, x[top:top+2*s.OW*c], x[top+s.W*c:top+s.W*c+2*s.OW*c], s.OW, c)
				continue
			}
			for ox := range s.OW {
				dst := out[ox*c : (ox+1)*c]
				clear(dst)
				for ky := range s.KH {
					iy := oy*s.SH + ky*s.DH
					for kx := range s.KW {
						ix := ox*s.SW + kx*s.DW
						MaxU8(dst, x[((b*s.H+iy)*s.W+ix)*c:][:c])
					}
				}
			}
		}
	})
}

// maxPool2x2Go is maxPool2x2U8Row in Go, and its definition: out[ox·c+k]
// is the maximum of the 2×2 window of pixels 2·ox and 2·ox+1 of the rows
// top and bottom, channel k.
func maxPool2x2Go(out, top, bottom []uint8, ow, c int) {
	for ox := range ow {
		for k := range c {
			l, r := 2*ox*c+k, (2*ox+1)*c+k
			out[ox*c+k] = max(top[l], top[r], bottom[l], bottom[r])
		}
	}
}
