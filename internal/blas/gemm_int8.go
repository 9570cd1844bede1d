package blas

import (
	"fmt"
	"math"

	"github.com/fashion-classifier/fashion/internal/parallel"
)

// Int8 matrix products: C = (A − za)·B with A an M×K matrix of uint8
// activations with zero point za, B a K×N matrix of int8 weights
// (symmetric, zero point 0, one scale per output column), and int32
// accumulation. The int32 sums are exact (|Σ| ≤ K·255·127 < 2^31 for
// K < 66000, checked by PackInt8B), so every kernel gives the same bits.
//
// The kernels widen both operands to int16 and multiply with vpmaddwd
// (int16×int16 pairs → int32), not vpmaddubsw (uint8×int8 pairs → int16
// with signed saturation): a pair 255·127 + 255·127 = 64770 overflows
// int16, so vpmaddubsw would need 7-bit weights or saturate silently and
// differ from the reference. B is widened once, when packed; the kernels
// read A's uint8 rows in place (two bytes broadcast, then vpmovzxbw) and
// compute Σ a·b, and the zero point is applied in the epilogue as
// −za·Σ_k b[k][j] (column sums kept with the packed B). Rows of A are
// copied only for a partial last block of rows or an odd K (zero-padded).
//
// Where the CPU has AVX-512 VNNI, vpdpbusd multiplies uint8 × int8 quads
// and adds them into int32 lanes without saturation, so the VNNI kernel
// reads B as int8 quads of k (packed once) and A's uint8 codes as they
// are, four k at a time; the zero point is applied the same way.
//
// Each kernel has its own tile (mr×nr) and packing (k in groups of 2 as
// int16 pairs, or of 4 as int8 quads): an Int8B is packed for the kernel
// that will run it.

// maxInt8K bounds K so that the int32 sums cannot overflow.
const maxInt8K = math.MaxInt32 / (255 * 127)

// Int8B is a K×N int8 matrix packed for GemmInt8 and its kernel (the
// fastest this CPU runs): panels of the kernel's nr columns, and in each
// panel, for every group of rows k … k+g−1 (g = 2 or 4), the nr columns'
// g values, as int16 pairs or int8 quads. K is padded to a multiple of g
// and N to a multiple of nr with zeros. It is immutable and may be
// shared.
type Int8B struct {
	k, n   int
	kp     int // k rounded up to a multiple of the kernel's group
	kern   *int8Kernel
	pairs  []int16 // the panels of a pairs kernel
	quads  []int8  // the panels of a quads kernel
	colsum []int32 // Σ_k b[k][j], for the zero point of A
}

// K is the number of rows (the inner dimension).
func (b *Int8B) K() int { return b.k }

// N is the number of columns (output channels).
func (b *Int8B) N() int { return b.n }

// PackInt8B packs the K×N row-major int8 matrix b (row stride ldb ≥ n)
// for the kernel that suits N columns on this CPU (int8KernelFor).
func PackInt8B(k, n int, b []int8, ldb int) (*Int8B, error) {
	return packInt8BFor(int8KernelFor(n), k, n, b, ldb)
}

// packInt8BFor is PackInt8B for the given kernel, for tests.
func packInt8BFor(kern *int8Kernel, k, n int, b []int8, ldb int) (*Int8B, error) {
	if k < 1 || n < 1 || ldb < n {
		return nil, fmt.Errorf("blas: int8 matrix %d×%d with row stride %d is not valid", k, n, ldb)
	}
	if k > maxInt8K {
		return nil, fmt.Errorf("blas: int8 product with K = %d could overflow int32 (at most %d)", k, maxInt8K)
	}
	if len(b) < (k-1)*ldb+n {
		return nil, fmt.Errorf("blas: int8 matrix %d×%d (stride %d) needs %d values, have %d", k, n, ldb, (k-1)*ldb+n, len(b))
	}
	g, nr := kern.group(), kern.nr
	kp := (k + g - 1) / g * g
	np := (n + nr - 1) / nr
	p := &Int8B{k: k, n: n, kp: kp, kern: kern, colsum: make([]int32, n)}
	if kern.pairs != nil {
		p.pairs = make([]int16, np*kp*nr)
	} else {
		p.quads = make([]int8, np*kp*nr)
	}
	for kk := range k {
		for j, v := range b[kk*ldb : kk*ldb+n] {
			p.colsum[j] += int32(v)
			// Panel j/nr, group kk/g, column j%nr, element kk%g.
			at := (j/nr)*kp*nr + (kk/g)*g*nr + g*(j%nr) + kk%g
			if p.pairs != nil {
				p.pairs[at] = int16(v)
			} else {
				p.quads[at] = v
			}
		}
	}
	return p, nil
}

// int8Kernel is an int8 micro-kernel computing an mr×nr int32 tile c
// (row stride nr) = a·panel over kg groups of k, where a holds mr rows of
// at least g·kg uint8 values (row stride lda) and panel is one panel of an
// Int8B packed for it. Exactly one of pairs (g = 2, int16 pairs) and
// quads (g = 4, int8 quads) is set.
type int8Kernel struct {
	name   string
	mr, nr int
	pairs  func(kg int, a []uint8, lda int, panel []int16, c []int32)
	quads  func(kg int, a []uint8, lda int, panel []int8, c []int32)
}

// group is how many k a packed group holds.
func (k *int8Kernel) group() int {
	if k.pairs != nil {
		return 2
	}
	return 4
}

// int8GoKernel is the portable kernel, and the definition of the others.
var int8GoKernel = int8Kernel{name: "go-6x16", mr: 6, nr: 16, pairs: int8KernGo}

func int8KernGo(kp2 int, a []uint8, lda int, panel []int16, c []int32) {
	const mr, nr = 6, 16
	var acc [mr][nr]int32
	for q := range kp2 {
		bq := panel[q*2*nr : (q+1)*2*nr]
		for r := range mr {
			a0, a1 := int32(a[r*lda+2*q]), int32(a[r*lda+2*q+1])
			row := &acc[r]
			for j := range nr {
				row[j] += a0*int32(bq[2*j]) + a1*int32(bq[2*j+1])
			}
		}
	}
	for r := range mr {
		copy(c[r*nr:(r+1)*nr], acc[r][:])
	}
}

// Requant is the epilogue of an int8 product: column j of the int32 sum
// becomes f = float32(s)·Scale[j] + Bias[j] (Bias may be nil), plus a
// residual for GemmInt8F32Add, then max(f, 0) if ReLU is set.
// GemmInt8F32 stores f; GemmInt8U8 stores the uint8
// clamp(round(f/OutScale) + OutZero), rounding half to even.
type Requant struct {
	Scale    []float32 // per column: the activation scale × the column's weight scale
	Bias     []float32 // per column, or nil
	ReLU     bool
	OutScale float32 // uint8 output's scale (GemmInt8U8 only)
	OutZero  uint8   // uint8 output's zero point (GemmInt8U8 only)
}

func (rq *Requant) check(n int, u8 bool) error {
	if len(rq.Scale) < n || (rq.Bias != nil && len(rq.Bias) < n) {
		return fmt.Errorf("blas: int8 epilogue has %d scales and %d biases for %d columns", len(rq.Scale), len(rq.Bias), n)
	}
	if u8 && !(rq.OutScale > 0) {
		return fmt.Errorf("blas: int8 epilogue output scale %v is not positive", rq.OutScale)
	}
	return nil
}

// value is the float epilogue of sum s in column j.
func (rq *Requant) value(s int32, j int) float32 {
	return rq.act(rq.affine(s, j))
}

// affine is the epilogue of sum s in column j before the ReLU: scaled,
// plus the bias.
func (rq *Requant) affine(s int32, j int) float32 {
	f := float32(float32(s) * rq.Scale[j]) // rounded, never fused with the bias
	if rq.Bias != nil {
		f += rq.Bias[j]
	}
	return f
}

// act is the epilogue's ReLU, when it has one.
func (rq *Requant) act(f float32) float32 {
	if rq.ReLU && !(f > 0) {
		f = 0
	}
	return f
}

// QuantizeU8 is the uint8 code of f with scale s (1/s given as inv) and
// zero point z: clamp(round(f·inv) + z, 0, 255), with f·inv rounded to
// float32 and then to the nearest integer, half to even. NaN maps to z.
// Every int8 path quantizes with it, and the vector epilogues do exactly
// these float32 steps.
func QuantizeU8(f, inv float32, z uint8) uint8 {
	t := float32(f * inv)
	switch {
	case t != t:
		t = 0
	case t > 512:
		t = 512
	case t < -512:
		t = -512
	}
	return uint8(min(max(int32(math.RoundToEven(float64(t)))+int32(z), 0), 255))
}

// QuantizeU8s sets dst[i] = QuantizeU8(src[i], inv, z) for every i <
// len(dst) (src is at least as long): the quantization of a float32
// input to an int8 layer, in one AVX-512 pass where the CPU has it (the
// scalar loop was a fifth of the int8 VGG's time, measured on the
// AVX-512 Xeon).
func QuantizeU8s(dst []uint8, src []float32, inv float32, z uint8) {
	quantizeU8s(dst, src[:len(dst)], inv, z)
}

// quantizeU8sGo is QuantizeU8s in Go, and the definition of the vector
// versions.
func quantizeU8sGo(dst []uint8, src []float32, inv float32, z uint8) {
	for i := range dst {
		dst[i] = QuantizeU8(src[i], inv, z)
	}
}

// GemmInt8S32 computes the raw sums c[i·ldc+j] = Σ_k (a[i·lda+k] − za)·B[k][j]
// for i < m.
func GemmInt8S32(m int, a []uint8, lda int, za uint8, b *Int8B, c []int32, ldc int) error {
	if err := checkInt8(m, a, lda, b, len(c), ldc); err != nil {
		return err
	}
	gemmInt8(m, a, lda, za, b, func(i0, rows, j0, cols int, tile, zs []int32) {
		for r := range rows {
			row, s := c[(i0+r)*ldc+j0:][:cols], tile[r*b.kern.nr:]
			for j := range row {
				row[j] = s[j] - zs[j]
			}
		}
	})
	return nil
}

// GemmInt8F32 computes c[i·ldc+j] = rq(Σ_k (a[i·lda+k] − za)·B[k][j], j):
// the product with the float epilogue fused (applied tile by tile).
func GemmInt8F32(m int, a []uint8, lda int, za uint8, b *Int8B, rq *Requant, c []float32, ldc int) error {
	return GemmInt8F32Add(m, a, lda, za, b, rq, nil, c, ldc)
}

// GemmInt8F32Add is GemmInt8F32 with res (laid out as c, or nil) added
// before the ReLU: a residual block's last convolution, its shortcut and
// the ReLU after the sum in the product's epilogue, not in a pass of its
// own over the output.
func GemmInt8F32Add(m int, a []uint8, lda int, za uint8, b *Int8B, rq *Requant, res, c []float32, ldc int) error {
	if err := checkInt8(m, a, lda, b, len(c), ldc); err != nil {
		return err
	}
	if res != nil && m > 0 && len(res) < (m-1)*ldc+b.n {
		return fmt.Errorf("blas: int8 product of %d×%d: residual has %d values", m, b.n, len(res))
	}
	if err := rq.check(b.n, false); err != nil {
		return err
	}
	gemmInt8(m, a, lda, za, b, func(i0, rows, j0, cols int, tile, zs []int32) {
		var r []float32
		if res != nil {
			r = res[i0*ldc+j0:]
		}
		requantTileF32(c[i0*ldc+j0:], ldc, rows, cols, tile, b.kern.nr, zs, rq, j0, r)
	})
	return nil
}

// requantTileF32Go is the float epilogue of a tile of rows×cols sums s
// (row stride lds) into out (row stride ldo), and the definition of the
// vector one: out[r·ldo+j] = act(affine(s[r·lds+j] − zs[j], j0+j) +
// res[r·ldo+j]), without the residual when res is nil.
func requantTileF32Go(out []float32, ldo, rows, cols int, s []int32, lds int, zs []int32, rq *Requant, j0 int, res []float32) {
	for r := range rows {
		for j := range cols {
			f := rq.affine(s[r*lds+j]-zs[j], j0+j)
			if res != nil {
				f += res[r*ldo+j]
			}
			out[r*ldo+j] = rq.act(f)
		}
	}
}

// GemmInt8U8 is GemmInt8F32 with the result requantized to uint8 with
// rq.OutScale and rq.OutZero: the next layer's input.
func GemmInt8U8(m int, a []uint8, lda int, za uint8, b *Int8B, rq *Requant, c []uint8, ldc int) error {
	if err := checkInt8(m, a, lda, b, len(c), ldc); err != nil {
		return err
	}
	if err := rq.check(b.n, true); err != nil {
		return err
	}
	inv := 1 / rq.OutScale
	gemmInt8(m, a, lda, za, b, func(i0, rows, j0, cols int, tile, zs []int32) {
		requantTileU8(c[i0*ldc+j0:], ldc, rows, cols, tile, b.kern.nr, zs, rq, j0, inv)
	})
	return nil
}

// requantTileU8Go is the uint8 epilogue of a tile of rows×cols sums s
// (row stride lds) into out (row stride ldo), and the definition of the
// vector ones: out[r·ldo+j] = QuantizeU8(value(s[r·lds+j] − zs[j], j0+j),
// inv, OutZero) — the float value exactly as GemmInt8F32 stores it, then
// quantized as the next layer would quantize it.
func requantTileU8Go(out []uint8, ldo, rows, cols int, s []int32, lds int, zs []int32, rq *Requant, j0 int, inv float32) {
	for r := range rows {
		for j := range cols {
			out[r*ldo+j] = QuantizeU8(rq.value(s[r*lds+j]-zs[j], j0+j), inv, rq.OutZero)
		}
	}
}

func checkInt8(m int, a []uint8, lda int, b *Int8B, lc, ldc int) error {
	if m < 0 || lda < b.k || ldc < b.n {
		return fmt.Errorf("blas: int8 product of %d rows: strides %d and %d for K = %d, N = %d", m, lda, ldc, b.k, b.n)
	}
	if m == 0 {
		return nil
	}
	if len(a) < (m-1)*lda+b.k || lc < (m-1)*ldc+b.n {
		return fmt.Errorf("blas: int8 product %d×%d×%d: A has %d values, C %d", m, b.k, b.n, len(a), lc)
	}
	return nil
}

// int8ParallelMACs is the size from which an int8 product is split
// between workers (as for float32 products).
const int8ParallelMACs = 1 << 20

// maxInt8NR bounds every int8 kernel's nr.
const maxInt8NR = 32

// gemmInt8 runs b's kernel over every mr×nr tile of C and hands the
// tile's int32 sums (rows × cols of them, row stride nr, for the rows from
// i0 and the columns from j0) to store(i0, rows, j0, cols, tile, zs),
// where zs is what the zero point of A takes off each column's sum
// (za·Σ_k b[k][j]): the uint8 epilogue subtracts it in its own vector
// pass, one call a tile (a call a tile row was a fifth of the int8
// VGG-w32's time). Blocks of mr rows are shared out between workers; each
// meets every panel of B.
func gemmInt8(m int, a []uint8, lda int, za uint8, b *Int8B, store func(i0, rows, j0, cols int, tile, zs []int32)) {
	if m == 0 {
		return
	}
	kern := b.kern
	mr, nr, g := kern.mr, kern.nr, kern.group()
	blocks := (m + mr - 1) / mr
	np := (b.n + nr - 1) / nr
	minPer := blocks
	if m*b.k*b.n >= int8ParallelMACs {
		minPer = max(1, 24/mr)
	}
	zsum := make([]int32, np*nr) // za·colsum, per column
	for j, cs := range b.colsum {
		zsum[j] = int32(za) * cs
	}
	panel := b.kp * nr
	parallel.For(blocks, minPer, func(lo, hi int) {
		var ap []uint8
		tile := make([]int32, mr*nr)
		for blk := lo; blk < hi; blk++ {
			i0 := blk * mr
			rows := min(mr, m-i0)
			src, ld := a[i0*lda:], lda
			if rows < mr || b.k != b.kp {
				// A partial block, or a K whose last group would read
				// past the row: a zero-padded copy.
				if ap == nil {
					ap = make([]uint8, mr*b.kp)
				}
				clear(ap)
				for r := range rows {
					copy(ap[r*b.kp:], a[(i0+r)*lda:(i0+r)*lda+b.k])
				}
				src, ld = ap, b.kp
			}
			for pi := range np {
				if kern.pairs != nil {
					kern.pairs(b.kp/g, src, ld, b.pairs[pi*panel:(pi+1)*panel], tile)
				} else {
					kern.quads(b.kp/g, src, ld, b.quads[pi*panel:(pi+1)*panel], tile)
				}
				j0 := pi * nr
				cols := min(nr, b.n-j0)
				store(i0, rows, j0, cols, tile, zsum[j0:j0+nr])
			}
		}
	})
}

// gemmInt8Ref is the reference the kernels are tested against: the plain
// triple loop over the unpacked operands.
func gemmInt8Ref(m, k, n int, a []uint8, lda int, za uint8, b []int8, ldb int, c []int32, ldc int) {
	for i := range m {
		for j := range n {
			var s int32
			for kk := range k {
				s += (int32(a[i*lda+kk]) - int32(za)) * int32(b[kk*ldb+j])
			}
			c[i*ldc+j] = s
		}
	}
}
