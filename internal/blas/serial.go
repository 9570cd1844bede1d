package blas

// GemmSerial is Gemm computed entirely on the calling goroutine. Callers
// that already split their work across goroutines at a coarser grain (a
// convolution working on chunks of images in parallel) use it to avoid
// nesting parallel sections, whose synchronisation would cost more than
// it gains.
func GemmSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(defaultKernel, 1, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// GemmSerialOverlapA is GemmSerial where the rows of A as stored may
// overlap: lda may be smaller than the stored row length (m when transA is
// set, k otherwise), so element (i, q) of a row-major A is a[i·lda+q] even
// when that address also belongs to the next row. A convolution uses it to
// multiply its unfolded patches without unfolding them: with images stored
// row by row with zero padding, the patch row of an output pixel is one
// contiguous run of the padded input, and the runs of neighbouring pixels
// overlap. lda must be at least 1 when A has more than one row.
func GemmSerialOverlapA(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemmA(defaultKernel, 1, true, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
