package blas

import "fmt"

// PackedB is a right-hand side B (k×n) packed once into the micro-panel
// layout of this CPU's kernel, for products repeated with the same B: the
// weights of a layer at inference time. Gemm packs op(B) on every call,
// which for a single image costs as much as the arithmetic; GemmPacked
// does not. A PackedB is immutable and safe for concurrent use.
type PackedB struct {
	kern *kernel
	k, n int
	// data holds ⌈n/nr⌉ panels of k·nr values, k-major, zero-padded on
	// the right of the last panel.
	data []float32
}

// PackB packs op(B), k×n, stored row-major with row stride ldb (B is n×k
// when transB is set).
func PackB(transB bool, k, n int, b []float32, ldb int) *PackedB {
	return packBWith(defaultKernel, transB, k, n, b, ldb)
}

func packBWith(kern *kernel, transB bool, k, n int, b []float32, ldb int) *PackedB {
	if k < 0 || n < 0 {
		panic(fmt.Sprintf("blas.PackB: negative dimension k=%d n=%d", k, n))
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMatrix("b", b, br, bc, ldb, false)
	panels := (n + kern.nr - 1) / kern.nr
	pb := &PackedB{kern: kern, k: k, n: n, data: make([]float32, panels*kern.nr*k)}
	if k == 0 || n == 0 {
		return pb
	}
	p := gemmProblem{kern: kern, transB: transB, k: k, n: n, b: b, ldb: ldb, bp: pb.data, nc: n, bk: k}
	p.packB(0, panels)
	return pb
}

// Repack packs a new op(B) of the same k×n shape into pb's storage, for a
// right-hand side that changes between uses (weights during training)
// without allocating. It must not run concurrently with a product that
// reads pb.
func (pb *PackedB) Repack(transB bool, b []float32, ldb int) {
	br, bc := pb.k, pb.n
	if transB {
		br, bc = pb.n, pb.k
	}
	checkMatrix("b", b, br, bc, ldb, false)
	if pb.k == 0 || pb.n == 0 {
		return
	}
	p := gemmProblem{kern: pb.kern, transB: transB, k: pb.k, n: pb.n, b: b, ldb: ldb, bp: pb.data, nc: pb.n, bk: pb.k}
	p.packB(0, len(pb.data)/(pb.kern.nr*pb.k))
}

// K is the number of rows of the packed matrix.
func (pb *PackedB) K() int { return pb.k }

// N is the number of columns of the packed matrix.
func (pb *PackedB) N() int { return pb.n }

// Align is the column granularity of the packing: GemmPackedCols takes
// column ranges starting at multiples of it. It is 16 or 32.
func (pb *PackedB) Align() int { return pb.kern.nr }

// GemmPacked computes C = alpha·A·B + beta·C on the calling goroutine for
// an m×k row-major A with row stride lda and a packed k×n B; C is m×n with
// row stride ldc. beta == 0 ignores C's old contents. It panics on
// dimensions or slices that do not fit, as Gemm does.
func GemmPacked(m int, alpha float32, a []float32, lda int, pb *PackedB, beta float32, c []float32, ldc int) {
	GemmPackedCols(m, 0, pb.n, alpha, a, lda, pb, beta, c, ldc)
}

// GemmPackedCols is GemmPacked restricted to columns [j0, j1) of B and C
// (C is still indexed from its column 0), so that goroutines can share one
// product by columns. j0 must be a multiple of pb.Align().
func GemmPackedCols(m, j0, j1 int, alpha float32, a []float32, lda int, pb *PackedB, beta float32, c []float32, ldc int) {
	k, n := pb.k, pb.n
	kern := pb.kern
	switch {
	case m < 0:
		panic(fmt.Sprintf("blas.GemmPacked: negative dimension m=%d", m))
	case j0 < 0 || j1 > n || j0 > j1 || j0%kern.nr != 0:
		panic(fmt.Sprintf("blas.GemmPackedCols: columns [%d, %d) of %d, start not a multiple of %d", j0, j1, n, kern.nr))
	}
	checkMatrix("a", a, m, k, lda, false)
	checkMatrix("c", c, m, n, ldc, false)
	if m == 0 || j0 == j1 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleMatrix(c[j0:], m, j1-j0, ldc, beta)
		return
	}
	if m <= gemvMaxRows && alpha == 1 && beta == 0 {
		pb.gemvRows(m, j0, j1, a, lda, c, ldc)
		return
	}
	p := gemmProblem{
		kern: kern, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: a, lda: lda, c: c, ldc: ldc,
		bp: pb.data, nc: j1, bk: k,
	}
	p.setBlocking()
	p.directB = false
	jp0, jp1 := j0/kern.nr, (j1+kern.nr-1)/kern.nr
	ws := getWorkspace(kern.mc * p.kc)
	defer putWorkspace(ws)
	for i0 := 0; i0 < m; i0 += kern.mc {
		for q0 := 0; q0 < k; q0 += p.kc {
			p.block(ws, i0, min(kern.mc, m-i0), jp0, jp1, q0)
		}
	}
}

// gemvMaxRows is the largest m for which GemmPacked multiplies row by row
// (kernel.gemv) rather than with the mr-row kernel, which would spend most
// of its multiply-adds on zero rows.
const gemvMaxRows = 2

// gemvRows sets columns [j0, j1) of C = A·B one row of A and 16 columns
// of B at a time.
func (pb *PackedB) gemvRows(m, j0, j1 int, a []float32, lda int, c []float32, ldc int) {
	nr, k := pb.kern.nr, pb.k
	var tile []float32 // for a partial last panel (a stack array would escape to the kernel)
	if (j1-j0)%16 != 0 {
		ws := getWorkspace(0)
		defer putWorkspace(ws)
		tile = ws.tile[:16]
	}
	for i := range m {
		x := a[i*lda : i*lda+k]
		for j := j0; j < j1; j += 16 {
			panel := pb.data[j/nr*k*nr+j%nr:]
			w := min(16, j1-j)
			if w == 16 {
				pb.kern.gemv(k, x, panel, nr, c[i*ldc+j:i*ldc+j+16])
				continue
			}
			pb.kern.gemv(k, x, panel, nr, tile)
			copy(c[i*ldc+j:i*ldc+j1], tile[:w])
		}
	}
}
