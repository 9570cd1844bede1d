package blas

import (
	"fmt"
	"sync"

	"github.com/fashion-classifier/fashion/internal/parallel"
)

// kernel describes one micro-kernel and the blocking that suits it.
type kernel struct {
	name string
	// mr×nr is the register tile the kernel computes.
	mr, nr int
	// kc is the largest K block; mc is the largest number of rows of A
	// packed at once.
	kc, mc int
	// directA makes the kernel read full panels of A in place instead of
	// packing them.
	directA bool
	// fn computes tile = alpha·Ap·Bp over k steps, where element (r, q) of
	// Ap is a[r·ars+q·aks] and Bp has the nr values of step q at b[q·ldb:],
	// and stores C = tile + beta·C for the mr×nr tile at c with row stride
	// ldc. beta == 0 stores without reading C. A packed panel has ars = 1,
	// aks = mr and ldb = nr; other strides let the kernel read A and B in
	// place. The slices must be long enough for every element addressed.
	fn func(k int, a []float32, ars, aks int, b []float32, ldb int, c []float32, ldc int, alpha, beta float32)
	// gemv sets y[0:16] = Σ_q x[q]·b[q·ldb : q·ldb+16] over k ≥ 1 steps:
	// a single row of A times 16 columns of a B panel, which the mr-row
	// kernel would compute with mr−1 rows of zeros.
	gemv func(k int, x, b []float32, ldb int, y []float32)
}

const (
	// parallelMinWork is the number of multiply-adds (m·n·k) below which a
	// product runs on the calling goroutine: about 10–20 µs of work, where
	// waking a second goroutine (much slower when the machine is busy) and
	// sharing the packed B would eat most of the gain.
	parallelMinWork = 1 << 20
	// packBMaxFloats bounds the packed copy of op(B) held at once by the
	// parallel path: a column block of op(B) covering all of K is packed in
	// one go when it fits.
	packBMaxFloats = 1 << 21
	// packBL2Floats bounds the K block × column block of op(B) packed at
	// once by the serial path, so that it stays in the L2 cache (1 MiB of
	// the 2 MiB per core) while every sliver of A meets it.
	packBL2Floats = 1 << 18
)

// Gemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
// where op(X) is X, or Xᵀ when the trans flag is set. op(A) is m×k, op(B) is k×n, C is m×n;
// lda, ldb, ldc are the row strides of A, B, C as stored. beta == 0 means C's old contents are ignored (may be NaN).
// It uses up to runtime.GOMAXPROCS(0) goroutines for large products and none for small ones.
//
// Gemm panics if a dimension is negative, a stride is smaller than the
// stored row length, or a slice is too short for the dimensions and strides,
// as indexing a slice out of range would.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	threads := 1
	if m*n*k >= parallelMinWork {
		threads = parallel.Workers()
	}
	gemm(defaultKernel, threads, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// checkMatrix panics unless x can hold a rows×cols row-major matrix with row
// stride ld. With overlap, rows may share storage (ld < cols), as long as
// consecutive rows start at different places (ld ≥ 1).
func checkMatrix(name string, x []float32, rows, cols, ld int, overlap bool) {
	switch {
	case overlap && rows > 1 && cols > 0 && ld < 1:
		panic(fmt.Sprintf("blas.Gemm: ld%s = %d, want at least 1 for overlapping rows", name, ld))
	case !overlap && (ld < cols || ld < 0):
		panic(fmt.Sprintf("blas.Gemm: ld%s = %d is less than the %d columns of %s as stored", name, ld, cols, name))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(x) < need {
		panic(fmt.Sprintf("blas.Gemm: len(%s) = %d, need at least %d for %d×%d with stride %d", name, len(x), need, rows, cols, ld))
	}
}

// gemm is Gemm with the micro-kernel and the number of goroutines given
// explicitly, so tests can force every path.
func gemm(kern *kernel, threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemmA(kern, threads, false, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmA is gemm that, with overlapA, accepts stored rows of A that
// overlap (see GemmSerialOverlapA). Nothing in the product writes to A or
// assumes its rows are disjoint; only the argument check differs.
func gemmA(kern *kernel, threads int, overlapA, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("blas.Gemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMatrix("a", a, ar, ac, lda, overlapA)
	checkMatrix("b", b, br, bc, ldb, false)
	checkMatrix("c", c, m, n, ldc, false)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleMatrix(c, m, n, ldc, beta)
		return
	}

	p := gemmProblem{
		kern: kern, transA: transA, transB: transB,
		m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
	}
	p.setBlocking()
	switch {
	case threads <= 1:
		p.runSerial()
	case k >= 8*max(m, n) && k >= 2*threads*kern.kc:
		// Few outputs, long sums (the weight gradient of a convolution):
		// row blocks would all stream the whole of A and B, so give each
		// goroutine a slice of K instead and add the partial products.
		runSplitK(p, threads)
	default:
		runParallel(p, threads)
	}
}

// directBMaxRows is the largest m for which full B micro-panels are read in
// place rather than packed: with so few rows each value of B is used only a
// few times, and copying it would cost as much as the arithmetic.
const directBMaxRows = 18

// setBlocking chooses the K block size and whether B is read in place.
func (p *gemmProblem) setBlocking() {
	kern := p.kern
	// Split K into near-equal blocks no larger than kern.kc (with 25% slack
	// so that K slightly above kc stays a single pass over C).
	nkb := 1
	if p.k > kern.kc+kern.kc/4 {
		nkb = (p.k + kern.kc - 1) / kern.kc
	}
	p.kc = (p.k + nkb - 1) / nkb
	p.directB = !p.transB && p.m <= directBMaxRows
	p.directA = p.kern.directA
}

// packCols returns how many columns of op(B) are packed at once when krows
// rows are packed: all of them unless that would take more than budget
// floats.
func (p *gemmProblem) packCols(krows, budget int) int {
	nc := p.n
	if maxCols := budget / krows / p.kern.nr * p.kern.nr; nc > maxCols {
		nc = max(p.kern.nr, maxCols)
	}
	return nc
}

// runSerial computes the product on the calling goroutine.
func (p *gemmProblem) runSerial() {
	kern := p.kern
	nc := p.packCols(p.kc, packBL2Floats)
	bws := getWorkspace((nc + kern.nr - 1) / kern.nr * kern.nr * p.kc)
	defer putWorkspace(bws)
	p.bp = bws.buf
	aws := getWorkspace(kern.mc * p.kc)
	defer putWorkspace(aws)
	for jc := 0; jc < p.n; jc += nc {
		p.jc, p.nc = jc, min(nc, p.n-jc)
		panels := (p.nc + kern.nr - 1) / kern.nr
		// K blocks outermost, as in BLIS: each block of B is packed just
		// before use, while it is still in cache, and is read from memory
		// once; only the smaller C is revisited.
		for q0 := 0; q0 < p.k; q0 += p.kc {
			p.bq0, p.bk = q0, min(p.kc, p.k-q0)
			p.packB(0, panels)
			for i0 := 0; i0 < p.m; i0 += kern.mc {
				p.block(aws, i0, min(kern.mc, p.m-i0), 0, panels, q0)
			}
		}
	}
}

// runSplitK computes the product on threads goroutines that take chunks of
// K in turn. Each goroutine accumulates its chunks in its own matrix (the
// calling goroutine's is C itself), and the matrices are added to C at the
// end. There are several chunks per goroutine so that one slowed down by
// other work on the machine simply takes fewer of them.
func runSplitK(p gemmProblem, threads int) {
	m, n := p.m, p.n
	chunks := min(4*threads, max(threads, p.k/p.kern.kc))
	scratch := getWorkspace((threads - 1) * m * n)
	defer putWorkspace(scratch)
	used := make([]bool, threads)
	parallel.Run(threads, chunks, func(w, t int) {
		k0, k1 := t*p.k/chunks, (t+1)*p.k/chunks
		sub := p
		sub.k = k1 - k0
		if p.transA {
			sub.a = p.a[k0*p.lda:]
		} else {
			sub.a = p.a[k0:]
		}
		if p.transB {
			sub.b = p.b[k0:]
		} else {
			sub.b = p.b[k0*p.ldb:]
		}
		if w > 0 {
			sub.c = scratch.buf[(w-1)*m*n : w*m*n]
			sub.ldc, sub.beta = n, 0
		}
		if used[w] {
			sub.beta = 1
		}
		used[w] = true
		sub.setBlocking()
		sub.runSerial()
	})
	if !used[0] {
		// The other goroutines took every chunk.
		scaleMatrix(p.c, m, n, p.ldc, p.beta)
	}
	for w := 1; w < threads; w++ {
		if !used[w] {
			continue
		}
		part := scratch.buf[(w-1)*m*n : w*m*n]
		for i := 0; i < m; i++ {
			Axpy(1, part[i*n:(i+1)*n], p.c[i*p.ldc:i*p.ldc+n])
		}
	}
}

// runParallel computes the product on up to threads goroutines, splitting
// C into row blocks (and, for few rows, column ranges). p is a copy so that
// the serial path's problem can stay on the stack.
func runParallel(p gemmProblem, threads int) {
	kern := p.kern
	m := p.m
	nc := p.packCols(p.k, packBMaxFloats)
	bws := getWorkspace((nc + kern.nr - 1) / kern.nr * kern.nr * p.k)
	defer putWorkspace(bws)
	p.bp = bws.buf
	p.bq0, p.bk = 0, p.k
	aws := make([]*workspace, threads)
	for i := range aws {
		aws[i] = getWorkspace(kern.mc * p.kc)
		defer putWorkspace(aws[i])
	}
	for jc := 0; jc < p.n; jc += nc {
		p.jc, p.nc = jc, min(nc, p.n-jc)
		panels := (p.nc + kern.nr - 1) / kern.nr

		// Pack op(B) in parallel, a few panels per task.
		perTask := max(1, panels/(4*threads))
		parallel.Run(threads, (panels+perTask-1)/perTask, func(_, t int) {
			p.packB(t*perTask, min(panels, (t+1)*perTask))
		})

		// Tasks are row blocks of C; when there are too few of them to keep
		// every goroutine busy, rows are cut finer and then the B panels
		// are split as well.
		mc := kern.mc
		if want := 4 * threads; (m+mc-1)/mc < want {
			mc = max(4*kern.mr, (m+want-1)/want)
			mc = (mc + kern.mr - 1) / kern.mr * kern.mr
			mc = min(mc, kern.mc)
		}
		mTasks := (m + mc - 1) / mc
		nSplit := 1
		if mTasks < 2*threads {
			nSplit = min(panels, (2*threads+mTasks-1)/mTasks)
		}
		parallel.Run(threads, mTasks*nSplit, func(w, t int) {
			it, jt := t/nSplit, t%nSplit
			i0 := it * mc
			jp0 := jt * panels / nSplit
			jp1 := (jt + 1) * panels / nSplit
			for q0 := 0; q0 < p.k; q0 += p.kc {
				p.block(aws[w], i0, min(mc, m-i0), jp0, jp1, q0)
			}
		})
	}
}

// gemmProblem holds the operands of one Gemm call and the packed op(B)
// column block currently being worked on.
type gemmProblem struct {
	kern           *kernel
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int

	kc int // K block size
	// directA reports that full micro-panels of op(A) are read in place
	// from a; only a partial last panel is packed.
	directA bool
	// directB reports that full micro-panels of B are read in place from
	// b (which is then not transposed); only a partial last panel is packed.
	directB bool
	// bp holds columns [jc, jc+nc) of op(B), packed as micro-panels. It
	// holds rows [bq0, bq0+bk) of op(B) (all of K, or one K block) and
	// panel j occupies bp[j·bk·nr:(j+1)·bk·nr].
	bp      []float32
	jc, nc  int
	bq0, bk int
}

// packB packs B micro-panels [p0, p1) of the current column block into p.bp.
func (p *gemmProblem) packB(p0, p1 int) {
	nr, k, q0 := p.kern.nr, p.bk, p.bq0
	for jp := p0; jp < p1; jp++ {
		j := p.jc + jp*nr
		w := min(nr, p.jc+p.nc-j)
		if p.directB && w == nr {
			continue
		}
		dst := p.bp[jp*k*nr : (jp+1)*k*nr]
		switch {
		case p.transB:
			// op(B)[q][j] = b[j·ldb+q]: read rows of the stored B
			// contiguously and scatter them into the panel.
			for jj := 0; jj < w; jj++ {
				src := p.b[(j+jj)*p.ldb+q0 : (j+jj)*p.ldb+q0+k]
				for q, v := range src {
					dst[q*nr+jj] = v
				}
			}
			if w < nr {
				for q := 0; q < k; q++ {
					clear(dst[q*nr+w : q*nr+nr])
				}
			}
		case w == 16 && nr == 16:
			// op(B)[q][j] = b[q·ldb+j]: each k step is a contiguous run,
			// copied as a fixed-size array to avoid a memmove call.
			for q := 0; q < k; q++ {
				*(*[16]float32)(dst[q*16:]) = *(*[16]float32)(p.b[(q0+q)*p.ldb+j:])
			}
		case w == 32 && nr == 32:
			for q := 0; q < k; q++ {
				*(*[32]float32)(dst[q*32:]) = *(*[32]float32)(p.b[(q0+q)*p.ldb+j:])
			}
		default:
			for q := 0; q < k; q++ {
				d := dst[q*nr : q*nr+nr]
				copy(d, p.b[(q0+q)*p.ldb+j:(q0+q)*p.ldb+j+w])
				clear(d[w:])
			}
		}
	}
}

// packA packs rows [i0, i0+mc) and columns [q0, q0+kc) of op(A) into dst
// as micro-panels of mr rows, each k-major, zero-padding the last panel.
func (p *gemmProblem) packA(dst []float32, i0, mc, q0, kc int) {
	mr := p.kern.mr
	for ip := 0; ip*mr < mc; ip++ {
		i := i0 + ip*mr
		h := min(mr, i0+mc-i)
		if p.directA && h == mr {
			continue
		}
		d := dst[ip*kc*mr : (ip+1)*kc*mr]
		switch {
		case p.transA && h == 6 && mr == 6:
			// op(A)[i][q] = a[q·lda+i]: each k step is a contiguous run.
			// Element-wise: an array assignment would call memmove.
			for q := 0; q < kc; q++ {
				s, t := (*[6]float32)(p.a[(q0+q)*p.lda+i:]), (*[6]float32)(d[q*6:])
				t[0], t[1], t[2], t[3], t[4], t[5] = s[0], s[1], s[2], s[3], s[4], s[5]
			}
		case p.transA && h == 12 && mr == 12:
			for q := 0; q < kc; q++ {
				s, t := (*[12]float32)(p.a[(q0+q)*p.lda+i:]), (*[12]float32)(d[q*12:])
				t[0], t[1], t[2], t[3], t[4], t[5] = s[0], s[1], s[2], s[3], s[4], s[5]
				t[6], t[7], t[8], t[9], t[10], t[11] = s[6], s[7], s[8], s[9], s[10], s[11]
			}
		case p.transA:
			for q := 0; q < kc; q++ {
				dq := d[q*mr : q*mr+mr]
				copy(dq, p.a[(q0+q)*p.lda+i:(q0+q)*p.lda+i+h])
				clear(dq[h:])
			}
		case h == mr && mr%6 == 0:
			// op(A)[i][q] = a[i·lda+q]: gather one value from each of six
			// rows per k step, writing the panel sequentially.
			for g := 0; g < mr; g += 6 {
				off := (i+g)*p.lda + q0
				r0 := p.a[off : off+kc]
				r1 := p.a[off+p.lda : off+p.lda+kc]
				r2 := p.a[off+2*p.lda : off+2*p.lda+kc]
				r3 := p.a[off+3*p.lda : off+3*p.lda+kc]
				r4 := p.a[off+4*p.lda : off+4*p.lda+kc]
				r5 := p.a[off+5*p.lda : off+5*p.lda+kc]
				for q := range r0 {
					dq := (*[6]float32)(d[q*mr+g:])
					dq[0], dq[1], dq[2], dq[3], dq[4], dq[5] = r0[q], r1[q], r2[q], r3[q], r4[q], r5[q]
				}
			}
		default:
			// Read rows contiguously and scatter, over zeros for the
			// missing rows (one clear: a clear per k step would cost a
			// memclr call each).
			if h < mr {
				clear(d)
			}
			for ii := 0; ii < h; ii++ {
				src := p.a[(i+ii)*p.lda+q0 : (i+ii)*p.lda+q0+kc]
				for q, v := range src {
					d[q*mr+ii] = v
				}
			}
		}
	}
}

// block adds the contribution of the K block starting at q0 to rows
// [i0, i0+mc) of C for B panels [jp0, jp1) of the current column block,
// packing A into ws as needed.
func (p *gemmProblem) block(ws *workspace, i0, mc, jp0, jp1, q0 int) {
	kern := p.kern
	mr, nr := kern.mr, kern.nr
	kc := min(p.kc, p.k-q0)
	beta := p.beta
	if q0 > 0 {
		beta = 1
	}
	abuf, tile := ws.buf, ws.tile[:]
	p.packA(abuf, i0, mc, q0, kc)
	for ip := 0; ip*mr < mc; ip++ {
		i := i0 + ip*mr
		h := min(mr, i0+mc-i)
		ap, ars, aks := abuf[ip*kc*mr:(ip+1)*kc*mr], 1, mr
		switch {
		case !p.directA || h < mr:
		case p.transA:
			ap, ars, aks = p.a[q0*p.lda+i:], 1, p.lda
		default:
			ap, ars, aks = p.a[i*p.lda+q0:], p.lda, 1
		}
		for jp := jp0; jp < jp1; jp++ {
			j := p.jc + jp*nr
			w := min(nr, p.jc+p.nc-j)
			off := jp*p.bk*nr + (q0-p.bq0)*nr
			bp, ldb := p.bp[off:off+kc*nr], nr
			if p.directB && w == nr {
				bp, ldb = p.b[q0*p.ldb+j:], p.ldb
			}
			if h == mr && w == nr {
				kern.fn(kc, ap, ars, aks, bp, ldb, p.c[i*p.ldc+j:], p.ldc, p.alpha, beta)
				continue
			}
			kern.fn(kc, ap, ars, aks, bp, ldb, tile, nr, p.alpha, 0)
			mergeTile(p.c[i*p.ldc+j:], p.ldc, tile, nr, h, w, beta)
		}
	}
}

// maxTile is the largest mr·nr of any kernel.
const maxTile = 12 * 32

// mergeTile stores C = tile + beta·C for the h×w corner of a tile.
func mergeTile(c []float32, ldc int, tile []float32, ldt, h, w int, beta float32) {
	for i := 0; i < h; i++ {
		ci := c[i*ldc : i*ldc+w]
		ti := tile[i*ldt : i*ldt+w]
		if beta == 0 {
			copy(ci, ti)
			continue
		}
		for j, v := range ti {
			ci[j] = v + beta*ci[j]
		}
	}
}

// scaleMatrix sets C = beta·C, writing zeros when beta == 0 so that NaNs in
// C do not survive.
func scaleMatrix(c []float32, m, n, ldc int, beta float32) {
	for i := 0; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(ci)
		case 1:
		default:
			for j := range ci {
				ci[j] *= beta
			}
		}
	}
}

// workspace is a reusable packing buffer, with room for one edge tile of C.
type workspace struct {
	buf  []float32
	tile [maxTile]float32
}

// workspaces recycles packing buffers between calls so that steady-state
// Gemm calls do not allocate.
var workspaces = sync.Pool{New: func() any { return new(workspace) }}

// getWorkspace returns a workspace whose buf has length n.
func getWorkspace(n int) *workspace {
	ws := workspaces.Get().(*workspace)
	if cap(ws.buf) < n {
		// Round up so that slightly different shapes reuse the buffer.
		ws.buf = make([]float32, n, n+n/4)
	}
	ws.buf = ws.buf[:n]
	return ws
}

// putWorkspace returns ws to the pool.
func putWorkspace(ws *workspace) {
	workspaces.Put(ws)
}

// KernelName names the micro-kernel Gemm uses on this CPU, such as
// "avx2-6x16", for benchmark reports.
func KernelName() string { return defaultKernel.name }
