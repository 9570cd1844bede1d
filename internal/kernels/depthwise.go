package kernels

import "github.com/fashion-classifier/fashion/internal/parallel"

// DepthwiseForward convolves each channel of x (n images) with its own
// kernel (w is [KH·KW, C]) into y, directly: every patch would be a single
// channel, so unfolding would only add memory traffic.
func DepthwiseForward(y, x []float32, n int, s ConvShape, w []float32) {
	c := s.C
	parallel.For(n*s.OH, 1, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			b, oy := r/s.OH, r%s.OH
			for ox := range s.OW {
				dst := y[((b*s.OH+oy)*s.OW+ox)*c:][:c]
				clear(dst)
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
						mulAdd(dst, x[((b*s.H+iy)*s.W+ix)*c:][:c], w[(ky*s.KW+kx)*c:][:c])
					}
				}
			}
		}
	})
}

// DepthwiseBackward computes the weight gradient dw (overwritten) and,
// when dx is not nil, the input gradient (overwritten) of DepthwiseForward
// from the output gradient dy. Images are split between workers, each
// summing its weight gradient in its own scratch buffer; the partial sums
// are added once all have finished, so no two goroutines write the same
// memory and nothing waits on another worker.
func DepthwiseBackward(dx, dw, x, dy []float32, n int, s ConvShape, w []float32, sc *Scratch) {
	if sc == nil {
		sc = new(Scratch)
	}
	c := s.C
	if dx != nil {
		clear(dx)
	}
	sc.Reserve(parallel.Workers())
	used := parallel.ForWorker(n, 1, func(wk, lo, hi int) {
		gw := sc.Floats(wk, slotD, len(dw))
		clear(gw)
		for b := lo; b < hi; b++ {
			for oy := range s.OH {
				for ox := range s.OW {
					g := dy[((b*s.OH+oy)*s.OW+ox)*c:][:c]
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
							k := (ky*s.KW + kx) * c
							mulAdd(gw[k:k+c], g, x[i:i+c])
							if dx != nil {
								mulAdd(dx[i:i+c], g, w[k:k+c])
							}
						}
					}
				}
			}
		}
	})
	clear(dw)
	for wk := range used {
		for j, v := range sc.Floats(wk, slotD, len(dw)) {
			dw[j] += v
		}
	}
}
