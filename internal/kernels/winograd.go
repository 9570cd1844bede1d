package kernels

import (
	"fmt"

	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/parallel"
)

// Winograd3x3 is a 3×3, stride-1, padding-1 convolution (no groups or
// dilation) computed with Winograd's F(2×2, 3×3) algorithm: each 2×2 block
// of output pixels of every output channel comes from a 4×4 input tile
// through 16 products of C input channels with C×M transformed weights,
// 2.25 times fewer multiply-adds than the direct convolution. The
// transformed weights are packed once, at construction, for this CPU's
// GEMM kernel; a Winograd3x3 is then immutable and safe for concurrent
// use. It is the fast path for every convolution of the VGG networks
// (3×3, stride 1, padding 1, 8 or more channels in and out).
//
// Data is NHWC: src is n×h×w×C, dst n×h×w×M.
type Winograd3x3 struct {
	C, M int
	// u[ξ] is the ξ-th of the 16 transformed weight matrices (C×M).
	u [16]*blas.PackedB
}

// NewWinograd3x3 transforms weights stored as the right-hand side of the
// im2col product: a [3·3·c, m] row-major matrix whose rows are ordered
// kernel row, kernel column, input channel. The weights are copied.
func NewWinograd3x3(wt []float32, c, m int) *Winograd3x3 {
	if c < 1 || m < 1 || len(wt) != 9*c*m {
		panic(fmt.Sprintf("kernels.NewWinograd3x3: %d weights for %d→%d channels, want %d", len(wt), c, m, 9*c*m))
	}
	w := &Winograd3x3{C: c, M: m}
	// U = G·g·Gᵀ per (input, output) channel pair, with
	// G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
	u := make([]float32, 16*c*m)
	var g [3][3]float32
	for ci := range c {
		for mo := range m {
			for ky := range 3 {
				for kx := range 3 {
					g[ky][kx] = wt[((ky*3+kx)*c+ci)*m+mo]
				}
			}
			var t [4][3]float32 // G·g
			for j := range 3 {
				t[0][j] = g[0][j]
				t[1][j] = (g[0][j] + g[1][j] + g[2][j]) / 2
				t[2][j] = (g[0][j] - g[1][j] + g[2][j]) / 2
				t[3][j] = g[2][j]
			}
			for i := range 4 {
				r := [4]float32{t[i][0], (t[i][0] + t[i][1] + t[i][2]) / 2, (t[i][0] - t[i][1] + t[i][2]) / 2, t[i][2]}
				for j := range 4 {
					u[((i*4+j)*c+ci)*m+mo] = r[j]
				}
			}
		}
	}
	for xi := range 16 {
		w.u[xi] = blas.PackB(false, c, m, u[xi*c*m:(xi+1)*c*m], m)
	}
	return w
}

// winoColBlock is the width of the output-channel blocks goroutines may
// split a product by: a multiple of every GEMM kernel's panel width.
const winoColBlock = 32

// winoTiles returns how many tiles one task transforms and multiplies at
// once: about 8k/(C+M), so that its 16 transformed tiles and 16 products
// (16·T·(C+M) floats) stay within half of a 1 MiB L2 cache, but small
// enough that a small batch still gives every worker a task. It is a
// multiple of 12 where it can be, so that the products' rows fill whole
// slivers of the 6- and 12-row GEMM kernels.
func (w *Winograd3x3) winoTiles(tiles, workers int) int {
	const unit = 12
	t := max(unit, 8192/(w.C+w.M)/unit*unit)
	if per := (tiles + 2*workers - 1) / (2 * workers); per < t {
		t = max(unit, (per+unit-1)/unit*unit)
	}
	return min(t, tiles)
}

// Forward computes dst = conv(src) followed by ep (nil for none) for n
// images of h×w pixels, splitting the work between parallel.Workers()
// goroutines. A bias with no activation or ReLU is applied while the
// outputs are written; other activations in a second pass. s provides the
// temporary memory (nil allocates).
func (w *Winograd3x3) Forward(dst, src []float32, n, h, wd int, ep *Epilogue, s *Scratch) {
	w.forward(dst, src, n, h, wd, ep, s, parallel.Workers(), winoAsm)
}

// forward is Forward with the number of workers and the choice of
// assembly transforms given, for tests.
func (w *Winograd3x3) forward(dst, src []float32, n, h, wd int, ep *Epilogue, s *Scratch, workers int, asm bool) {
	c, m := w.C, w.M
	if n < 0 || h < 1 || wd < 1 || len(src) < n*h*wd*c || len(dst) < n*h*wd*m {
		panic(fmt.Sprintf("kernels.Winograd3x3: %d→%d values for %d images of %d×%d×%d→%d", len(src), len(dst), n, h, wd, c, m))
	}
	if n == 0 {
		return
	}
	asm = asm && c%8 == 0 && m%8 == 0
	th, tw := (h+1)/2, (wd+1)/2
	tiles := n * th * tw
	tpt := w.winoTiles(tiles, workers)
	groups := (tiles + tpt - 1) / tpt
	colBlocks := (m + winoColBlock - 1) / winoColBlock
	split := 1
	if groups < 2*workers && workers > 1 {
		split = min(colBlocks, (2*workers+groups-1)/groups)
	}
	var bias []float32
	relu := false
	fused := ep == nil || ep.Act.Kind == ActNone || ep.Act.Kind == ActReLU
	if ep != nil {
		bias = ep.Bias
		relu = ep.Act.Kind == ActReLU
	}
	if bias == nil {
		bias = s.Floats(0, slotD, m)
		clear(bias)
	}
	if s != nil {
		s.Reserve(workers)
	}
	job := winoJob{
		dst: dst, src: src, bias: bias[:m], relu: relu, s: s, asm: asm,
		h: h, wd: wd, th: th, tw: tw, tiles: tiles, tpt: tpt, split: split, colBlocks: colBlocks,
	}
	if tasks := groups * split; workers <= 1 || tasks == 1 {
		// No closure for the serial case, so that it does not allocate.
		for t := range tasks {
			w.task(&job, 0, t)
		}
	} else {
		shared := job // only this copy escapes to the goroutines
		parallel.Run(workers, tasks, func(wk, t int) { w.task(&shared, wk, t) })
	}
	if !fused {
		ApplyActParallel(dst[:n*h*wd*m], dst[:n*h*wd*m], ep.Act)
	}
}

// winoJob is one Forward call, shared by its tasks.
type winoJob struct {
	dst, src, bias               []float32
	relu, asm                    bool
	s                            *Scratch
	h, wd, th, tw                int
	tiles, tpt, split, colBlocks int
}

// task runs task t of job on worker wk: tiles [g·tpt, (g+1)·tpt) of group g
// for one block of output channels.
func (w *Winograd3x3) task(job *winoJob, wk, t int) {
	c, m := w.C, w.M
	g, part := t/job.split, t%job.split
	t0 := g * job.tpt
	nt := min(job.tpt, job.tiles-t0)
	cb0, cb1 := part*job.colBlocks/job.split, (part+1)*job.colBlocks/job.split
	m0, m1 := cb0*winoColBlock, min(m, cb1*winoColBlock)
	if m0 >= m1 {
		return
	}
	v := job.s.Floats(wk, slotA, 16*nt*c+16*c)
	patch := v[16*nt*c:]
	v = v[:16*nt*c]
	prod := job.s.Floats(wk, slotB, 16*nt*m+m)
	spill := prod[16*nt*m:]
	prod = prod[:16*nt*m]
	w.inputTiles(v, patch, job.src, t0, nt, job.th, job.tw, job.h, job.wd, job.asm)
	for xi := range 16 {
		blas.GemmPackedCols(nt, m0, m1, 1, v[xi*nt*c:], c, w.u[xi], 0, prod[xi*nt*m:], m)
	}
	w.outputTiles(job.dst, prod, spill, job.bias, job.relu, t0, nt, job.th, job.tw, job.h, job.wd, m0, m1, job.asm)
}

// inputTiles writes the transformed input tiles t0 … t0+nt−1 into v: the
// 16 matrices V[ξ] of nt×C, ξ-major. Tiles that overhang the image are
// first gathered, zero-padded, into patch (16·C floats).
func (w *Winograd3x3) inputTiles(v, patch, src []float32, t0, nt, th, tw, h, wd int, asm bool) {
	c := w.C
	ds := nt * c
	for i := range nt {
		t := t0 + i
		img, r := t/(th*tw), t%(th*tw)
		y0, x0 := 2*(r/tw)-1, 2*(r%tw)-1
		var p []float32
		rs := wd * c
		if y0 >= 0 && x0 >= 0 && y0+4 <= h && x0+4 <= wd {
			p = src[((img*h+y0)*wd+x0)*c:]
		} else {
			clear(patch)
			for dy := range 4 {
				y := y0 + dy
				if y < 0 || y >= h {
					continue
				}
				for dx := range 4 {
					x := x0 + dx
					if x < 0 || x >= wd {
						continue
					}
					copy(patch[(dy*4+dx)*c:(dy*4+dx+1)*c], src[((img*h+y)*wd+x)*c:])
				}
			}
			p, rs = patch, 4*c
		}
		out := v[i*c:]
		if asm {
			_ = p[3*rs+3*c+c-1]
			_ = out[15*ds+c-1]
			winoInputAVX2(&p[0], rs, c, c, &out[0], ds)
		} else {
			winoInputGo(p, rs, c, c, out, ds)
		}
	}
}

// outputTiles turns the products of tiles t0 … t0+nt−1, output channels
// [m0, m1), into 2×2 output blocks with bias and optional ReLU, writing
// the pixels that fall inside the image; spill (M floats) takes the rest.
func (w *Winograd3x3) outputTiles(dst, prod, spill, bias []float32, relu bool, t0, nt, th, tw, h, wd, m0, m1 int, asm bool) {
	m := w.M
	ss := nt * m
	var d [4][]float32
	for i := range nt {
		t := t0 + i
		img, r := t/(th*tw), t%(th*tw)
		y0, x0 := 2*(r/tw), 2*(r%tw)
		for k := range 4 {
			y, x := y0+k/2, x0+k%2
			if y < h && x < wd {
				d[k] = dst[((img*h+y)*wd+x)*m+m0 : ((img*h+y)*wd+x)*m+m1]
			} else {
				d[k] = spill[m0:m1]
			}
		}
		src := prod[i*m+m0:]
		if asm {
			_ = src[15*ss+m1-m0-1]
			winoOutputAVX2(&src[0], ss, m1-m0, &bias[m0], relu, &d[0][0], &d[1][0], &d[2][0], &d[3][0])
		} else {
			winoOutputGo(src, ss, bias[m0:m1], relu, d)
		}
	}
}

// winoInputGo computes V = Bᵀ·d·B for c channels of the 4×4 tile whose
// pixel (i, j) starts at p[i·rs+j·ps], writing V[ξ] at out[ξ·ds:], with
// Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1].
func winoInputGo(p []float32, rs, ps, c int, out []float32, ds int) {
	for k := range c {
		var d [4][4]float32
		for i := range 4 {
			for j := range 4 {
				d[i][j] = p[i*rs+j*ps+k]
			}
		}
		for i := range 4 {
			var t [4]float32
			for j := range 4 {
				switch i {
				case 0:
					t[j] = d[0][j] - d[2][j]
				case 1:
					t[j] = d[1][j] + d[2][j]
				case 2:
					t[j] = d[2][j] - d[1][j]
				case 3:
					t[j] = d[1][j] - d[3][j]
				}
			}
			out[(i*4+0)*ds+k] = t[0] - t[2]
			out[(i*4+1)*ds+k] = t[1] + t[2]
			out[(i*4+2)*ds+k] = t[2] - t[1]
			out[(i*4+3)*ds+k] = t[1] - t[3]
		}
	}
}

// winoOutputGo computes Y = Aᵀ·Mξ·A + bias (then ReLU when relu) for
// len(bias) channels, where Mξ is at src[ξ·ss:], with Aᵀ = [1 1 1 0;
// 0 1 −1 −1], writing output pixel (i, j) of the 2×2 block to d[2i+j].
func winoOutputGo(src []float32, ss int, bias []float32, relu bool, d [4][]float32) {
	for k := range bias {
		var s [2][4]float32
		for j := range 4 {
			m0, m1, m2, m3 := src[j*ss+k], src[(4+j)*ss+k], src[(8+j)*ss+k], src[(12+j)*ss+k]
			s[0][j] = m0 + m1 + m2
			s[1][j] = m1 - m2 - m3
		}
		for i := range 2 {
			y0 := s[i][0] + s[i][1] + s[i][2] + bias[k]
			y1 := s[i][1] - s[i][2] - s[i][3] + bias[k]
			if relu {
				y0, y1 = max(y0, 0), max(y1, 0)
			}
			d[2*i][k], d[2*i+1][k] = y0, y1
		}
	}
}
