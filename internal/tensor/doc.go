// Package tensor provides the dense float32 kernels that training and
// inference spend almost all of their time in: a blocked, packed matrix
// multiply ([Gemm]) and a few vector helpers ([Dot], [Axpy]).
//
// # Blocking scheme
//
// [Gemm] follows the Goto/BLIS design. The product C = alpha·op(A)·op(B) +
// beta·C is cut into pieces sized for the cache hierarchy so that the
// floating-point units, not memory, are the bottleneck:
//
//   - op(B) is packed once per call (or per column block of at most a few
//     MiB when it is very large) into micro-panels of NR columns, each
//     stored k-major: for every p the NR values op(B)[p][j..j+NR) are
//     contiguous. A micro-panel covering KC rows (KC·NR·4 bytes, 16–20 KiB)
//     stays in the L1 cache while it is multiplied against a whole block of
//     A, so every B value loaded from memory is used MC times.
//   - op(A) is packed per block of MC rows × KC columns into micro-panels of
//     MR rows, again k-major. The block (MC·KC·4 bytes, a few hundred KiB)
//     stays in the per-core L2 cache while all B micro-panels stream past it.
//   - A micro-kernel multiplies one MR×KC A micro-panel by one KC×NR B
//     micro-panel, keeping the MR×NR tile of C in registers for the whole
//     inner loop and touching memory for C only once at the end. On amd64
//     with AVX2 and FMA it is a 6×16 assembly kernel (12 YMM accumulators,
//     two B loads and six broadcasts per k step); with AVX-512 a 12×32
//     kernel (24 ZMM accumulators) is used instead when present. Elsewhere
//     a pure-Go kernel with the same blocking runs.
//
// Packing absorbs the transposes: op(A) and op(B) are read with whichever
// strides the flags imply, and the packed layout is always the same, so one
// micro-kernel serves all four transpose combinations. Packing also pads
// partial panels with zeros, which lets the kernel run unconditionally; tiles
// at the right and bottom edges of C are computed into a small buffer and then
// merged.
//
// KC is chosen so that K up to about 384 is handled in a single block (the
// convolution products have K = 9·channels), avoiding repeated passes over C;
// larger K is split into near-equal blocks. beta is applied when the first K
// block is stored, so beta == 0 never reads C and NaN garbage in C is ignored.
//
// # Parallelism
//
// Large products use up to runtime.GOMAXPROCS(0) goroutines. Packing of B is
// shared; the C matrix is then divided into tasks of MC rows (and, when there
// are too few row blocks, of a range of B micro-panels) that the goroutines
// pull from an atomic counter. Dynamic scheduling keeps both cores busy even
// when one of them is shared with other work. Products with fewer than
// about 2^18 multiply-adds run on the calling goroutine, where starting
// goroutines would cost more than it saves. Packing buffers come from a
// sync.Pool, so the serial path does not allocate in steady state.
package tensor
