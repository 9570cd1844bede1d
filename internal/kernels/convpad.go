package kernels

import (
	"github.com/fashion-classifier/fashion/internal/blas"
)

// A stride-1 "same" convolution can multiply its patches without unfolding
// them (im2col). Store a chunk of images in a padded layout: each image row
// followed by p zero pixels (K = 2p+1), p zero rows between images and
// around the chunk. Output pixel (y, x) of image j is then given a row
// number q = j·s + y·wp + x, and for each kernel row ky the patch values
// it needs, (kx, c) for kx in [0, K), are the K·C consecutive floats
// starting at padded pixel q + ky·wp: left and right overhangs land on the
// zero pixels after the previous and the current row. So the convolution is
// K products whose A is the padded input read in place with a row stride of
// C floats (rows overlap, see blas.GemmSerialOverlapA), accumulated into
// an output in the same row numbering. That numbering has gaps (q with
// x ≥ w or y ≥ h), computed and then dropped when the output is copied out:
// (h+p)(w+p)/(h·w) − 1 extra arithmetic, 7% at 28×28 with p = 1, against
// an im2col that writes and re-reads K² values per input value. The input gradient is the
// same kind of convolution of the padded output gradient, and the weight
// gradient is the product of the padded input (again read in place, as the
// transposed A) with the output gradient in row numbering — which is the
// padded output gradient itself, seen from its first data pixel, because
// its padding is exactly the zero rows the gaps need.

// padLayout is the padded layout of images of h×w pixels for a kernel of
// size 2p+1.
type padLayout struct {
	h, w, p int
	wp      int // pixels per padded row, w+p
	s       int // pixels per image, (h+p)·wp
}

func newPadLayout(h, w, p int) padLayout {
	return padLayout{h: h, w: w, p: p, wp: w + p, s: (h + p) * (w + p)}
}

// pixels is the length in pixels of a padded chunk of n images, enough for
// every patch read of every output row.
func (l padLayout) pixels(n int) int { return n*l.s + l.p*l.wp + l.p }

// rows is the number of output rows (including gaps) of a chunk of n
// images: up to the last real output pixel.
func (l padLayout) rows(n int) int { return (n-1)*l.s + (l.h-1)*l.wp + l.w }

// first is the padded pixel at which the data of the chunk starts (pixel
// (0, 0) of image 0): row q of the output numbering is padded pixel
// first+q.
func (l padLayout) first() int { return l.p*l.wp + l.p }

// pad writes n images of ch channels from src (NHWC) into dst in the
// padded layout, zeroing the padding. dst must hold pixels(n)·ch floats.
func (l padLayout) pad(dst, src []float32, n, ch int) {
	rowLen, padLen := l.w*ch, l.p*ch
	off := l.first() * ch
	clear(dst[:off])
	for j := range n {
		for y := range l.h {
			s := src[((j*l.h+y)*l.w)*ch:]
			copy(dst[off:off+rowLen], s[:rowLen])
			clear(dst[off+rowLen : off+rowLen+padLen])
			off += l.wp * ch
		}
		// The p zero rows below image j, which are the rows above image
		// j+1; the last image's reach into the pixels past them is cleared
		// below.
		clear(dst[off : off+l.p*l.wp*ch])
		off += l.p * l.wp * ch
	}
	clear(dst[off : l.pixels(n)*ch])
}

// unpad copies the real output pixels of n images of ch channels from src,
// in the output row numbering, to dst (NHWC).
func (l padLayout) unpad(dst, src []float32, n, ch int) {
	l.unpadWith(dst, src, n, ch, func(d, s []float32) { copy(d, s) })
}

// unpadWith is unpad that moves each image row with move(dst, src)
// instead of copy, so a transformation can ride along with the copy.
func (l padLayout) unpadWith(dst, src []float32, n, ch int, move func(dst, src []float32)) {
	rowLen := l.w * ch
	for j := range n {
		for y := range l.h {
			s := src[(j*l.s+y*l.wp)*ch:]
			move(dst[((j*l.h+y)*l.w)*ch:][:rowLen], s[:rowLen])
		}
	}
}

// padChunk is how many images a worker convolves at once in the padded
// layout: as many as keep the padded input, output and (in the backward
// pass) input gradient within the im2col budget.
func (c Conv) padChunk(l padLayout) int {
	return c.capChunk(ColBudget / (l.s * (2*c.C + c.M)))
}

// forwardPadded is Forward's convolution in the padded layout.
func (c Conv) forwardPadded(y, x []float32, n int, w []float32, ep *Epilogue, sc *Scratch) {
	k, in, o := c.KH, c.C, c.M
	l := newPadLayout(c.H, c.W, c.PT)
	hw := c.H * c.W
	chunks(n, c.padChunk(l), sc, nil, func(wk int, _ gemmFunc, n0, n1 int, _ bool) {
		nc := n1 - n0
		xp := sc.Floats(wk, slotA, l.pixels(nc)*in)
		l.pad(xp, x[n0*hw*in:n1*hw*in], nc, in)
		rows := l.rows(nc)
		op := sc.Floats(wk, slotB, rows*o)
		for ky := range k {
			beta := float32(1)
			if ky == 0 {
				beta = 0
			}
			blas.GemmSerialOverlapA(false, false, rows, o, k*in, 1, xp[ky*l.wp*in:], in, w[ky*k*in*o:], o, beta, op, o)
		}
		chunk := y[n0*hw*o : n1*hw*o]
		if ep.Nop() {
			l.unpad(chunk, op, nc, o)
			return
		}
		// The epilogue in the same pass as the copy out of the padded
		// layout.
		l.unpadWith(chunk, op, nc, o, ep.RowsFrom)
	})
}

// backwardPadded is Backward's weight gradient (into each worker's slotD)
// and, if dx is not nil, input gradient in the padded layout.
func (c Conv) backwardPadded(dx, x, dy []float32, n int, flipped []float32, sc *Scratch, ran []bool) {
	k, in, o := c.KH, c.C, c.M
	l := newPadLayout(c.H, c.W, c.PT)
	hw := c.H * c.W
	chunks(n, c.padChunk(l), sc, ran, func(wk int, _ gemmFunc, n0, n1 int, first bool) {
		nc := n1 - n0
		xp := sc.Floats(wk, slotA, l.pixels(nc)*in)
		l.pad(xp, x[n0*hw*in:n1*hw*in], nc, in)
		dyp := sc.Floats(wk, slotB, l.pixels(nc)*o)
		l.pad(dyp, dy[n0*hw*o:n1*hw*o], nc, o)
		rows := l.rows(nc)
		beta := float32(1)
		if first {
			beta = 0
		}
		dw := sc.Floats(wk, slotD, k*k*in*o)
		for ky := range k {
			blas.GemmSerialOverlapA(true, false, k*in, o, rows, 1, xp[ky*l.wp*in:], in, dyp[l.first()*o:], o, beta, dw[ky*k*in*o:], o)
		}
		if dx == nil {
			return
		}
		dxq := sc.Floats(wk, slotC, rows*in)
		for ky := range k {
			beta := float32(1)
			if ky == 0 {
				beta = 0
			}
			blas.GemmSerialOverlapA(false, false, rows, in, k*o, 1, dyp[ky*l.wp*o:], o, flipped[ky*k*o*in:], in, beta, dxq, in)
		}
		l.unpad(dx[n0*hw*in:n1*hw*in], dxq, nc, in)
	})
}
