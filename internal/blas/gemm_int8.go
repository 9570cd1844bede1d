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
// An AVX-512 VNNI kernel (vpdpbusd: uint8×int8 quads accumulated straight
// into int32, no saturation) would be a third int8Kernel entry in
// int8Kernels, fastest first. It needs a different packing (raw uint8 A in
// groups of four k, B in k-quads, and za·colsum(B) subtracted in the
// epilogue); it is not written because this code was developed on a
// machine without VNNI and untested assembly is not shipped.

// int8MR and int8NR are the tile of C every int8 kernel computes: 6 rows
// of A by 16 columns of B.
const (
	int8MR = 6
	int8NR = 16
)

// maxInt8K bounds K so that the int32 sums cannot overflow.
const maxInt8K = math.MaxInt32 / (255 * 127)

// Int8B is a K×N int8 matrix packed for GemmInt8: panels of 16 columns,
// and in each panel, for every pair of rows k, k+1, the 16 columns'
// (b[k][j], b[k+1][j]) as int16 pairs. K is padded to even and N to a
// multiple of 16 with zeros. It is immutable and may be shared.
type Int8B struct {
	k, n   int
	kp     int     // k rounded up to even
	panels []int16 // ceil(n/16) panels of kp·16 values
	colsum []int32 // Σ_k b[k][j], for the zero point of A
}

// K is the number of rows (the inner dimension).
func (b *Int8B) K() int { return b.k }

// N is the number of columns (output channels).
func (b *Int8B) N() int { return b.n }

// PackInt8B packs the K×N row-major int8 matrix b (row stride ldb ≥ n).
func PackInt8B(k, n int, b []int8, ldb int) (*Int8B, error) {
	if k < 1 || n < 1 || ldb < n {
		return nil, fmt.Errorf("blas: int8 matrix %d×%d with row stride %d is not valid", k, n, ldb)
	}
	if k > maxInt8K {
		return nil, fmt.Errorf("blas: int8 product with K = %d could overflow int32 (at most %d)", k, maxInt8K)
	}
	if len(b) < (k-1)*ldb+n {
		return nil, fmt.Errorf("blas: int8 matrix %d×%d (stride %d) needs %d values, have %d", k, n, ldb, (k-1)*ldb+n, len(b))
	}
	kp := k + k&1
	np := (n + int8NR - 1) / int8NR
	p := &Int8B{k: k, n: n, kp: kp, panels: make([]int16, np*kp*int8NR), colsum: make([]int32, n)}
	for kk := range k {
		for j, v := range b[kk*ldb : kk*ldb+n] {
			p.colsum[j] += int32(v)
		}
	}
	for pi := range np {
		panel := p.panels[pi*kp*int8NR:]
		for kk := range k {
			row := b[kk*ldb:]
			for j := range int8NR {
				col := pi*int8NR + j
				if col >= n {
					break
				}
				// Pair kk/2, column j, element kk&1.
				panel[(kk/2)*2*int8NR+2*j+kk&1] = int16(row[col])
			}
		}
	}
	return p, nil
}

// int8Kernel is an int8 micro-kernel: fn computes the 6×16 int32 tile
// c (row stride 16) = a·panel over kp2 pairs of k, where a holds 6 rows of
// at least 2·kp2 uint8 values (row stride lda) and panel is one panel of
// an Int8B.
type int8Kernel struct {
	name string
	fn   func(kp2 int, a []uint8, lda int, panel []int16, c []int32)
}

// int8GoKernel is the portable kernel, and the definition of the others.
var int8GoKernel = int8Kernel{name: "go-6x16", fn: int8KernGo}

func int8KernGo(kp2 int, a []uint8, lda int, panel []int16, c []int32) {
	var acc [int8MR][int8NR]int32
	for q := range kp2 {
		bq := panel[q*2*int8NR : (q+1)*2*int8NR]
		for r := range int8MR {
			a0, a1 := int32(a[r*lda+2*q]), int32(a[r*lda+2*q+1])
			row := &acc[r]
			for j := range int8NR {
				row[j] += a0*int32(bq[2*j]) + a1*int32(bq[2*j+1])
			}
		}
	}
	for r := range int8MR {
		copy(c[r*int8NR:(r+1)*int8NR], acc[r][:])
	}
}

// Requant is the epilogue of an int8 product: column j of the int32 sum
// becomes f = float32(s)·Scale[j] + Bias[j] (Bias may be nil), then
// max(f, 0) if ReLU is set. GemmInt8F32 stores f; GemmInt8U8 stores the
// uint8 clamp(round(f/OutScale) + OutZero), rounding half to even.
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
	f := float32(s) * rq.Scale[j]
	if rq.Bias != nil {
		f += rq.Bias[j]
	}
	if rq.ReLU && !(f > 0) {
		f = 0
	}
	return f
}

// QuantizeU8 is the uint8 code of f with scale s (1/s given as inv) and
// zero point z: clamp(round(f·inv) + z, 0, 255), half to even. NaN maps
// to z. Every int8 path quantizes with it.
func QuantizeU8(f, inv float32, z uint8) uint8 {
	q := float64(f)*float64(inv) + float64(z)
	switch {
	case q >= 255:
		return 255
	case q > 0:
		return uint8(math.RoundToEven(q))
	default: // q ≤ 0 or NaN (treated as 0 offset, then clamped)
		if q != q {
			return z
		}
		return 0
	}
}

// GemmInt8S32 computes the raw sums c[i·ldc+j] = Σ_k (a[i·lda+k] − za)·B[k][j]
// for i < m.
func GemmInt8S32(m int, a []uint8, lda int, za uint8, b *Int8B, c []int32, ldc int) error {
	return gemmInt8S32With(defaultInt8Kernel, m, a, lda, za, b, c, ldc)
}

func gemmInt8S32With(kern *int8Kernel, m int, a []uint8, lda int, za uint8, b *Int8B, c []int32, ldc int) error {
	if err := checkInt8(m, a, lda, b, len(c), ldc); err != nil {
		return err
	}
	gemmInt8(kern, m, a, lda, za, b, func(i, j0, cols int, s []int32) {
		copy(c[i*ldc+j0:i*ldc+j0+cols], s[:cols])
	})
	return nil
}

// GemmInt8F32 computes c[i·ldc+j] = rq(Σ_k (a[i·lda+k] − za)·B[k][j], j):
// the product with the float epilogue fused (applied tile by tile).
func GemmInt8F32(m int, a []uint8, lda int, za uint8, b *Int8B, rq *Requant, c []float32, ldc int) error {
	return gemmInt8F32With(defaultInt8Kernel, m, a, lda, za, b, rq, c, ldc)
}

func gemmInt8F32With(kern *int8Kernel, m int, a []uint8, lda int, za uint8, b *Int8B, rq *Requant, c []float32, ldc int) error {
	if err := checkInt8(m, a, lda, b, len(c), ldc); err != nil {
		return err
	}
	if err := rq.check(b.n, false); err != nil {
		return err
	}
	gemmInt8(kern, m, a, lda, za, b, func(i, j0, cols int, s []int32) {
		rq.rowF32(c[i*ldc+j0:i*ldc+j0+cols], s[:cols], j0)
	})
	return nil
}

// rowF32 is value over one row of a tile (columns j0 …), with the loop
// specialised for a bias and ReLU: out[j] = value(s[j], j0+j).
func (rq *Requant) rowF32(out []float32, s []int32, j0 int) {
	scale := rq.Scale[j0 : j0+len(out)]
	s = s[:len(out)]
	if rq.Bias == nil {
		for j := range out {
			out[j] = rq.value(s[j], j0+j)
		}
		return
	}
	bias := rq.Bias[j0 : j0+len(out)]
	if !rq.ReLU {
		for j := range out {
			out[j] = float32(s[j])*scale[j] + bias[j]
		}
		return
	}
	for j := range out {
		f := float32(s[j])*scale[j] + bias[j]
		if !(f > 0) {
			f = 0
		}
		out[j] = f
	}
}

// GemmInt8U8 is GemmInt8F32 with the result requantized to uint8 with
// rq.OutScale and rq.OutZero: the next layer's input.
func GemmInt8U8(m int, a []uint8, lda int, za uint8, b *Int8B, rq *Requant, c []uint8, ldc int) error {
	return gemmInt8U8With(defaultInt8Kernel, m, a, lda, za, b, rq, c, ldc)
}

func gemmInt8U8With(kern *int8Kernel, m int, a []uint8, lda int, za uint8, b *Int8B, rq *Requant, c []uint8, ldc int) error {
	if err := checkInt8(m, a, lda, b, len(c), ldc); err != nil {
		return err
	}
	if err := rq.check(b.n, true); err != nil {
		return err
	}
	inv := 1 / rq.OutScale
	gemmInt8(kern, m, a, lda, za, b, func(i, j0, cols int, s []int32) {
		// The float values exactly as GemmInt8F32 stores them, then
		// quantized as the next layer would quantize those.
		var f [int8NR]float32
		rq.rowF32(f[:cols], s[:cols], j0)
		out := c[i*ldc+j0 : i*ldc+j0+cols]
		for j := range out {
			out[j] = QuantizeU8(f[j], inv, rq.OutZero)
		}
	})
	return nil
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

// gemmInt8 runs kern over every 6×16 tile of C and hands each row of the
// tile's int32 sums, zero point applied, to store(i, j0, cols, sums).
// Blocks of 6 rows are shared out between workers; each meets every panel
// of B.
func gemmInt8(kern *int8Kernel, m int, a []uint8, lda int, za uint8, b *Int8B, store func(i, j0, cols int, s []int32)) {
	if m == 0 {
		return
	}
	blocks := (m + int8MR - 1) / int8MR
	np := (b.n + int8NR - 1) / int8NR
	minPer := blocks
	if m*b.k*b.n >= int8ParallelMACs {
		minPer = 4
	}
	zsum := make([]int32, np*int8NR) // za·colsum, per column
	for j, cs := range b.colsum {
		zsum[j] = int32(za) * cs
	}
	parallel.For(blocks, minPer, func(lo, hi int) {
		var ap []uint8
		var tile [int8MR * int8NR]int32
		for blk := lo; blk < hi; blk++ {
			i0 := blk * int8MR
			rows := min(int8MR, m-i0)
			src, ld := a[i0*lda:], lda
			if rows < int8MR || b.k != b.kp {
				// A partial block, or an odd K whose last pair would read
				// past the row: a zero-padded copy.
				if ap == nil {
					ap = make([]uint8, int8MR*b.kp)
				}
				clear(ap)
				for r := range rows {
					copy(ap[r*b.kp:], a[(i0+r)*lda:(i0+r)*lda+b.k])
				}
				src, ld = ap, b.kp
			}
			for pi := range np {
				kern.fn(b.kp/2, src, ld, b.panels[pi*b.kp*int8NR:(pi+1)*b.kp*int8NR], tile[:])
				j0 := pi * int8NR
				cols := min(int8NR, b.n-j0)
				zs := zsum[j0 : j0+int8NR]
				for r := range rows {
					row := tile[r*int8NR : (r+1)*int8NR]
					for j := range row {
						row[j] -= zs[j]
					}
					store(i0+r, j0, cols, row)
				}
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
