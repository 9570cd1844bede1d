package tensor

// GemmSerial is Gemm computed entirely on the calling goroutine. Callers
// that already split their work across goroutines at a coarser grain (a
// convolution working on chunks of images in parallel) use it to avoid
// nesting parallel sections, whose synchronisation would cost more than
// it gains.
func GemmSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(defaultKernel, 1, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
