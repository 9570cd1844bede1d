//go:build race

package kernels

// raceEnabled reports a -race build, whose instrumentation allocates (and
// whose sync.Pool drops a random share of the values put back, as blas's
// GEMM workspaces use), so allocation counts are not meaningful.
const raceEnabled = true
