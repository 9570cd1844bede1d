package kernels

import (
	"fmt"

	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/parallel"
)

// Winograd3x3 is a 3×3, stride-1, padding-1 convolution (no groups or
// dilation) computed with Winograd's minimal filtering algorithms: each
// r×r block of output pixels of every output channel comes from an
// (r+2)×(r+2) input tile through (r+2)² products of C input channels with
// C×M transformed weights. F(4×4, 3×3) (r = 4) needs 4 times fewer
// multiply-adds than the direct convolution, F(2×2, 3×3) (r = 2) 2.25
// times; Forward picks F(4×4) where there are enough tiles to fill the
// products and F(2×2) otherwise (a single 7×7 image). The transformed
// weights of both are packed once, at construction, for this CPU's GEMM
// kernel; a Winograd3x3 is then immutable and safe for concurrent use. It
// is the fast path for every convolution of the VGG networks (3×3, stride
// 1, padding 1, 8 or more channels in and out).
//
// Data is NHWC: src is n×h×w×C, dst n×h×w×M. F(4×4) rounds a little more
// than a direct sum (relative error ~1e-5 of Σ|w·x| rather than ~1e-6).
type Winograd3x3 struct {
	C, M   int
	f2, f4 winoForm
	raw    []float32 // Update's transformed weights before packing
}

// winoForm is one of the algorithms: output tiles of r×r pixels from input
// tiles of a×a, a = r+2.
type winoForm struct {
	r, a int
	// u[ξ] is the ξ-th of the a² transformed weight matrices (C×M).
	u []*blas.PackedB
	// stale says an Update has replaced the weights of the other form
	// and not these.
	stale bool
}

// winoG are the weight transforms G (a×3) of F(2×2, 3×3) and F(4×4, 3×3).
var (
	winoG2 = [][3]float64{{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}}
	winoG4 = [][3]float64{
		{1.0 / 4, 0, 0},
		{-1.0 / 6, -1.0 / 6, -1.0 / 6},
		{-1.0 / 6, 1.0 / 6, -1.0 / 6},
		{1.0 / 24, 1.0 / 12, 1.0 / 6},
		{1.0 / 24, -1.0 / 12, 1.0 / 6},
		{0, 0, 1},
	}
)

// NewWinograd3x3 transforms weights stored as the right-hand side of the
// im2col product: a [3·3·c, m] row-major matrix whose rows are ordered
// kernel row, kernel column, input channel. The weights are copied.
func NewWinograd3x3(wt []float32, c, m int) *Winograd3x3 {
	if c < 1 || m < 1 || len(wt) != 9*c*m {
		panic(fmt.Sprintf("kernels.NewWinograd3x3: %d weights for %d→%d channels, want %d", len(wt), c, m, 9*c*m))
	}
	return &Winograd3x3{C: c, M: m, f2: newWinoForm(winoG2, wt, c, m), f4: newWinoForm(winoG4, wt, c, m)}
}

// newWinoForm computes U = G·g·Gᵀ for every (input, output) channel pair,
// in float64, and packs the a² matrices.
func newWinoForm(g [][3]float64, wt []float32, c, m int) winoForm {
	a := len(g)
	u := make([]float32, a*a*c*m)
	transformWeights(u, g, wt, c, m)
	f := winoForm{r: a - 2, a: a, u: make([]*blas.PackedB, a*a)}
	for xi := range a * a {
		f.u[xi] = blas.PackB(false, c, m, u[xi*c*m:(xi+1)*c*m], m)
	}
	return f
}

// transformWeights writes U = G·g·Gᵀ of every (input, output) channel
// pair of wt ([3·3·c, m]) into u, as a² matrices of c×m, computed in
// float64.
func transformWeights(u []float32, g [][3]float64, wt []float32, c, m int) {
	for ci := range c {
		transformChannel(u, g, wt, ci, c, m)
	}
}

// transformChannel is transformWeights for the pairs of input channel ci.
func transformChannel(u []float32, g [][3]float64, wt []float32, ci, c, m int) {
	a := len(g)
	var k [3][3]float64
	var t [6][3]float64 // G·g (a ≤ 6)
	for mo := range m {
		for ky := range 3 {
			for kx := range 3 {
				k[ky][kx] = float64(wt[((ky*3+kx)*c+ci)*m+mo])
			}
		}
		for i := range a {
			for j := range 3 {
				t[i][j] = g[i][0]*k[0][j] + g[i][1]*k[1][j] + g[i][2]*k[2][j]
			}
		}
		for i := range a {
			for j := range a {
				v := t[i][0]*g[j][0] + t[i][1]*g[j][1] + t[i][2]*g[j][2]
				u[((i*a+j)*c+ci)*m+mo] = float32(v)
			}
		}
	}
}

// Update replaces the weights (the same [3·3·C, M] layout as
// NewWinograd3x3's) in the storage of w, for training, where they change
// every step: it transforms and packs only the algorithm Forward picks for
// n images of h×wd, which Forward then requires (the other is marked out of
// date until an Update for a shape that picks it). Update must not run
// concurrently with Forward; after it, w is again safe for concurrent
// Forwards on that shape.
func (w *Winograd3x3) Update(wt []float32, n, h, wd int) {
	if len(wt) != 9*w.C*w.M {
		panic(fmt.Sprintf("kernels.Winograd3x3.Update: %d weights for %d→%d channels, want %d", len(wt), w.C, w.M, 9*w.C*w.M))
	}
	f, g, other := &w.f4, winoG4, &w.f2
	if w.form(n, h, wd) == &w.f2 {
		f, g, other = &w.f2, winoG2, &w.f4
	}
	c, m := w.C, w.M
	a2 := f.a * f.a
	u := Grow(&w.raw, a2*c*m)
	// The pairs of input channels are independent; split them between
	// workers (a 64→128 layer's F(4×4) is about 2.4 MFLOP in float64).
	parallel.For(c, max(1, 4096/m), func(lo, hi int) {
		for ci := lo; ci < hi; ci++ {
			transformChannel(u, g, wt, ci, c, m)
		}
	})
	for xi := range a2 {
		f.u[xi].Repack(false, u[xi*c*m:(xi+1)*c*m], m)
	}
	f.stale = false
	other.stale = true
}

// winoColBlock is the width of the output-channel blocks goroutines may
// split a product by: a multiple of every GEMM kernel's panel width.
const winoColBlock = 32

// winoTiles returns how many tiles one task transforms and multiplies at
// once: about 64k/(a²·(C+M)), so that its a² transformed tiles and
// products (256 KiB) and the transformed weights stay in a 512 KiB L2
// cache (Zen 3's), but small enough that a small batch still gives every
// worker a task. It is a multiple of 12 where it can be, so that the
// products' rows fill whole slivers of the 6- and 12-row GEMM kernels.
func (w *Winograd3x3) winoTiles(f *winoForm, tiles, workers int) int {
	const unit = 12
	t := max(unit, (1<<16)/(f.a*f.a*(w.C+w.M))/unit*unit)
	if per := (tiles + 2*workers - 1) / (2 * workers); per < t {
		t = max(unit, (per+unit-1)/unit*unit)
	}
	return min(t, tiles)
}

// form picks the algorithm for n images of h×w: F(4×4) when it has at
// least 48 tiles, F(2×2) for fewer (a single image of 14×14 or 7×7), where
// F(4×4)'s tiles overhang the image by a third and its products have too
// few rows to run at full speed (measured on Zen 3: F(4×4) 1.2–1.6× F(2×2)
// on 28×28 and on batches of 14×14 and 7×7, 0.8–1.0× on single 14×14 and
// 7×7 images).
func (w *Winograd3x3) form(n, h, wd int) *winoForm {
	if winoR(n, h, wd) == 2 {
		return &w.f2
	}
	return &w.f4
}

// winoR is the output tile size form picks: 4 for F(4×4), 2 for F(2×2).
func winoR(n, h, wd int) int {
	if n*((h+3)/4)*((wd+3)/4) < 48 {
		return 2
	}
	return 4
}

// Forward computes dst = conv(src) followed by ep (nil for none) for n
// images of h×w pixels, splitting the work between parallel.Workers()
// goroutines. A bias with no activation or ReLU is applied while the
// outputs are written; other activations in a second pass. s provides the
// temporary memory (nil allocates).
func (w *Winograd3x3) Forward(dst, src []float32, n, h, wd int, ep *Epilogue, s *Scratch) {
	w.forward(w.form(n, h, wd), dst, src, nil, n, h, wd, ep, s, parallel.Workers(), winoAsm, false)
}

// ForwardAdd is Forward with res, laid out as dst, added to the output
// before the activation: the last convolution of a residual block, its
// shortcut and the ReLU after the sum in one pass. The sum is taken from
// each output block while it is still in the cache, instead of a pass
// that reads both maps and writes a third. ep may only be nil or a bias
// with no activation or ReLU.
func (w *Winograd3x3) ForwardAdd(dst, src, res []float32, n, h, wd int, ep *Epilogue, s *Scratch) {
	w.forward(w.form(n, h, wd), dst, src, res, n, h, wd, ep, s, parallel.Workers(), winoAsm, false)
}

// ForwardMaxPool is Forward followed by a 2×2, stride-2 max pool without
// padding: dst is n×⌊h/2⌋×⌊w/2⌋×M. The pool is taken from each output
// block while it is still in the cache (both forms' r×r blocks start at
// even pixels, so every pooling window lies in one block), so the
// full-size output is never written or read back. ep may only be nil or
// a bias with no activation or ReLU (which commute with the maximum); h
// and w must be at least 2.
func (w *Winograd3x3) ForwardMaxPool(dst, src []float32, n, h, wd int, ep *Epilogue, s *Scratch) {
	w.forward(w.form(n, h, wd), dst, src, nil, n, h, wd, ep, s, parallel.Workers(), winoAsm, true)
}

// forward is Forward (with res ForwardAdd, with pool ForwardMaxPool) with
// the algorithm, the number of workers and the choice of assembly
// transforms given, for tests.
func (w *Winograd3x3) forward(f *winoForm, dst, src, res []float32, n, h, wd int, ep *Epilogue, s *Scratch, workers int, asm, pool bool) {
	c, m := w.C, w.M
	oh, ow := h, wd
	if pool {
		oh, ow = h/2, wd/2
	}
	if n < 0 || h < 1 || wd < 1 || oh < 1 || ow < 1 || len(src) < n*h*wd*c || len(dst) < n*oh*ow*m {
		panic(fmt.Sprintf("kernels.Winograd3x3: %d→%d values for %d images of %d×%d×%d→%d (pool %v)", len(src), len(dst), n, h, wd, c, m, pool))
	}
	fused := ep == nil || ep.Act.Kind == ActNone || ep.Act.Kind == ActReLU
	if pool && !fused {
		panic(fmt.Sprintf("kernels.Winograd3x3.ForwardMaxPool: activation %v cannot be fused", ep.Act))
	}
	if res != nil && (pool || !fused || len(res) < n*h*wd*m) {
		panic(fmt.Sprintf("kernels.Winograd3x3.ForwardAdd: %d residual values for %d outputs (activation %v, pool %v)", len(res), n*h*wd*m, ep.Act, pool))
	}
	if n == 0 {
		return
	}
	if f.stale {
		panic(fmt.Sprintf("kernels.Winograd3x3: F(%d×%d) weights out of date: Update was last called for a batch shape that picks the other algorithm", f.r, f.r))
	}
	asm = asm && c%8 == 0 && m%8 == 0
	th, tw := (h+f.r-1)/f.r, (wd+f.r-1)/f.r
	tiles := n * th * tw
	tpt := w.winoTiles(f, tiles, workers)
	groups := (tiles + tpt - 1) / tpt
	colBlocks := (m + winoColBlock - 1) / winoColBlock
	split := 1
	if groups < 2*workers && workers > 1 {
		split = min(colBlocks, (2*workers+groups-1)/groups)
	}
	var bias []float32
	relu := false
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
		f:   f,
		dst: dst, src: src, res: res, bias: bias[:m], relu: relu, s: s, asm: asm, pool: pool,
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
	f                            *winoForm
	dst, src, res, bias          []float32
	relu, asm, pool              bool
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
	f := job.f
	a2 := f.a * f.a
	// v holds the transformed tiles, then one gathered tile (patch), the
	// assembly's temporary and, to pool from, one block of outputs.
	var blk []float32
	if job.pool {
		blk = job.s.Floats(wk, slotC, f.r*f.r*m)
	}
	v := job.s.Floats(wk, slotA, a2*nt*c+a2*c+36*8)
	patch, tmp := v[a2*nt*c:a2*nt*c+a2*c], v[a2*nt*c+a2*c:]
	v = v[:a2*nt*c]
	prod := job.s.Floats(wk, slotB, a2*nt*m+m)
	spill := prod[a2*nt*m:]
	prod = prod[:a2*nt*m]
	inputTiles(f, c, v, patch, tmp, job.src, t0, nt, job.th, job.tw, job.h, job.wd, job.asm)
	for xi := range a2 {
		blas.GemmPackedCols(nt, m0, m1, 1, v[xi*nt*c:], c, f.u[xi], 0, prod[xi*nt*m:], m)
	}
	w.outputTiles(f, job.dst, job.res, prod, spill, tmp, blk, job.bias, job.relu, t0, nt, job.th, job.tw, job.h, job.wd, m0, m1, job.asm)
}

// inputTiles writes the transformed input tiles t0 … t0+nt−1 of images
// of c channels into v: the a² matrices V[ξ] of nt×c, ξ-major. Tiles that overhang the image are
// first gathered, zero-padded, into patch (a²·C floats). tmp is the
// assembly's temporary (36×8 floats).
func inputTiles(f *winoForm, c int, v, patch, tmp, src []float32, t0, nt, th, tw, h, wd int, asm bool) {
	a, r := f.a, f.r
	ds := nt * c
	for i := range nt {
		t := t0 + i
		img, rem := t/(th*tw), t%(th*tw)
		y0, x0 := r*(rem/tw)-1, r*(rem%tw)-1
		var p []float32
		rs := wd * c
		if y0 >= 0 && x0 >= 0 && y0+a <= h && x0+a <= wd {
			p = src[((img*h+y0)*wd+x0)*c:]
		} else {
			clear(patch)
			for dy := range a {
				y := y0 + dy
				if y < 0 || y >= h {
					continue
				}
				xl, xh := max(x0, 0), min(x0+a, wd)
				if xl < xh {
					copy(patch[(dy*a+xl-x0)*c:(dy*a+xh-x0)*c], src[((img*h+y)*wd+xl)*c:])
				}
			}
			p, rs = patch, a*c
		}
		out := v[i*c:]
		_ = p[(a-1)*rs+(a-1)*c+c-1]
		_ = out[(a*a-1)*ds+c-1]
		switch {
		case asm && a == 4:
			winoInputAVX2(&p[0], rs, c, c, &out[0], ds)
		case asm:
			wino4InputAVX2(&p[0], rs, c, &out[0], ds, &tmp[0], c/8)
		case a == 4:
			winoInputGo(p, rs, c, c, out, ds)
		default:
			wino4InputGo(p, rs, c, c, out, ds)
		}
	}
}

// outputTiles turns the products of tiles t0 … t0+nt−1, output channels
// [m0, m1), into r×r output blocks with bias and optional ReLU, writing
// the pixels that fall inside the image; spill (M floats) takes the rest.
// With res (laid out as dst) each pixel also gets res's value added
// before the ReLU. With blk (r·r·M floats) each block is written there
// instead and dst receives its 2×2 max pool: ⌊h/2⌋×⌊w/2⌋ pixels per image.
func (w *Winograd3x3) outputTiles(f *winoForm, dst, res, prod, spill, tmp, blk, bias []float32, relu bool, t0, nt, th, tw, h, wd, m0, m1 int, asm bool) {
	m, r := w.M, f.r
	ss := nt * m
	oh, ow := h/2, wd/2
	var d [16][]float32
	var dp [16]*float32
	if blk != nil {
		for k := range r * r {
			d[k] = blk[k*m : (k+1)*m]
		}
	}
	for i := range nt {
		t := t0 + i
		img, rem := t/(th*tw), t%(th*tw)
		y0, x0 := r*(rem/tw), r*(rem%tw)
		for k := range r * r {
			y, x := y0+k/r, x0+k%r
			switch {
			case blk != nil: // d already points into blk
			case y < h && x < wd:
				d[k] = dst[((img*h+y)*wd+x)*m : ((img*h+y)*wd+x+1)*m]
			default:
				d[k] = spill[:m]
			}
			dp[k] = &d[k][0]
		}
		src := prod[i*m:]
		_ = src[(f.a*f.a-1)*ss+m1-1]
		// With a residual the ReLU comes after the sum, below.
		brelu := relu && res == nil
		switch {
		case asm && r == 2:
			winoOutputAVX2(&src[m0], ss, m1-m0, &bias[m0], brelu, &d[0][m0], &d[1][m0], &d[2][m0], &d[3][m0])
		case asm:
			wino4OutputAVX2(&src[m0], ss, &bias[m0], brelu, &dp, m0, &tmp[0], (m1-m0)/8)
		case r == 2:
			winoOutputGo(src[m0:], ss, bias[m0:m1], brelu, [4][]float32{d[0][m0:], d[1][m0:], d[2][m0:], d[3][m0:]})
		default:
			wino4OutputGo(src, ss, bias, m0, m1, brelu, &d)
		}
		if res != nil {
			w.addResidual(dst, res, relu, img, y0, x0, r, h, wd, m0, m1)
		}
		if blk == nil {
			continue
		}
		// Pool the block: window (qy, qx) covers block pixels 2qy…2qy+1 ×
		// 2qx…2qx+1. Windows past ⌊h/2⌋×⌊w/2⌋ hold only pixels of the
		// overhang or of an odd last row or column, which the pool drops.
		for qy := range r / 2 {
			py := y0/2 + qy
			if py >= oh {
				break
			}
			for qx := range r / 2 {
				px := x0/2 + qx
				if px >= ow {
					break
				}
				k := 2*qy*r + 2*qx
				out := dst[((img*oh+py)*ow+px)*m+m0 : ((img*oh+py)*ow+px)*m+m1]
				a, b, c, e := d[k][m0:m1], d[k+1][m0:m1], d[k+r][m0:m1], d[k+r+1][m0:m1]
				if asm {
					max4AVX2(&out[0], &a[0], &b[0], &c[0], &e[0], m1-m0)
				} else {
					max4Go(out, a, b, c, e)
				}
			}
		}
	}
}

// addResidual adds res to the r×r output block at (y0, x0) of image img
// in dst (both n×h×wd×M) for channels [m0, m1), clamping at 0 if relu.
// With every channel, a row of the block is one run of memory: one Add
// per row instead of one per pixel (ResNet-20's 16-channel blocks spent
// 3 of 13 ms per 256 images in per-pixel Add calls on the AVX-512 Xeon).
func (w *Winograd3x3) addResidual(dst, res []float32, relu bool, img, y0, x0, r, h, wd, m0, m1 int) {
	m := w.M
	xe := min(r, wd-x0) // pixels of the row inside the image
	for y := y0; y < min(y0+r, h); y++ {
		o := ((img*h+y)*wd + x0) * m
		if m0 == 0 && m1 == m {
			Add(dst[o:o+xe*m], dst[o:o+xe*m], res[o:o+xe*m], relu)
			continue
		}
		for x := range xe {
			p := o + x*m
			Add(dst[p+m0:p+m1], dst[p+m0:p+m1], res[p+m0:p+m1], relu)
		}
	}
}

// max4Go sets dst[i] to the largest of a[i], b[i], c[i] and d[i].
func max4Go(dst, a, b, c, d []float32) {
	for i := range dst {
		dst[i] = max(max(a[i], b[i]), max(c[i], d[i]))
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
