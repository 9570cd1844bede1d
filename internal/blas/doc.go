// Package blas provides the dense float32 kernels that training and
// inference spend almost all of their time in: a blocked matrix multiply
// ([Gemm]), the same product with a right-hand side packed once for
// repeated use ([PackB], [GemmPacked]: the weights of a layer at inference
// time) and [Axpy], the vector update the convolution kernels accumulate
// gradients with.
//
// Int8 products ([PackInt8B], [GemmInt8S32], [GemmInt8F32], [GemmInt8U8]:
// uint8 activations with a zero point times int8 per-column-symmetric
// weights, int32 sums, a fused requantization epilogue) are described in
// gemm_int8.go; they run an AVX2 kernel or a pure-Go one, with the same
// bits.
//
// # Blocking scheme
//
// [Gemm] follows the Goto/BLIS design. The product C = alpha·op(A)·op(B) +
// beta·C is cut into pieces sized for the cache hierarchy so that the
// floating-point units, not memory, are the bottleneck:
//
//   - A micro-kernel multiplies an MR×KC sliver of op(A) by a KC×NR
//     micro-panel of op(B), keeping the MR×NR tile of C in registers for the
//     whole inner loop and touching C only once at the end. With AVX-512 it
//     is a 12×32 assembly kernel (24 ZMM accumulators); with AVX2 and FMA a
//     6×16 one (12 YMM accumulators, two B loads and six broadcasts per k
//     step); elsewhere a pure-Go kernel with the 6×16 blocking runs. The
//     kernel is picked once at start-up with golang.org/x/sys/cpu.
//   - op(B) is packed into micro-panels of NR columns, k-major: for every k
//     the NR values are contiguous, so the kernel reads B with unit stride.
//     A block of KC rows × up to NC columns (at most 1 MiB) stays in the
//     per-core L2 cache while all of A streams past it, so each value of B
//     is loaded from memory once per block of A rows rather than once per
//     sliver.
//   - A is walked in slivers of MR rows × KC columns (14 KiB or less),
//     each of which stays in the L1 cache while it meets every B
//     micro-panel of the block in turn. The kernels take arbitrary strides
//     for A, so full slivers are read in place rather than packed: the
//     convolution products have A = im2col output with rows of exactly K
//     floats, where packing cost as much time as the arithmetic. Only a
//     partial last sliver is packed, zero-padded.
//   - KC is about 300, so the convolution products (K = 9·channels ≤ 576)
//     need one or two passes over C; larger K is split into near-equal
//     blocks. In the single-goroutine path K blocks are the outer loop, as
//     in BLIS, so each block of B is packed just before use and read from
//     memory once. Visiting each A sliver once per block (rather than each
//     B micro-panel once, as BLIS does) measured 10–20% faster here.
//
// Packing absorbs the transposes: op(B) is read with whichever strides the
// flags imply and the packed layout is always the same, and A's transpose is
// just a swap of the two strides given to the kernel, so one micro-kernel
// serves all four combinations. Tiles at the right and bottom edges of C are
// computed into a small buffer and merged. beta is applied when the first K
// block is stored, so beta == 0 never reads C and NaN garbage in C is
// ignored. When op(A) has at most a few rows (single-image inference) B is
// read in place as well, since each of its values is used only once or
// twice.
//
// # Parallelism
//
// Products of at least 2^20 multiply-adds use up to runtime.GOMAXPROCS(0)
// goroutines; smaller ones run on the calling goroutine, where starting
// goroutines would cost more than it saves. Normally op(B) is packed once,
// in parallel, and the goroutines then pull tasks of MC rows of C (cut finer,
// and split across B panels, when there are few rows) from an atomic
// counter. When K is much longer than M and N (a convolution's weight
// gradient, M = 288, N = 64, K = 25088), row blocks would each stream all of
// A and B, so the goroutines instead take chunks of K, accumulate into
// private copies of C and add them up at the end. Dynamic scheduling keeps
// both cores busy even when one of them is shared with other work. Packing
// buffers come from a sync.Pool, so the serial path does not allocate in
// steady state.
package blas
