//go:build race

package blas

// raceEnabled reports a -race build, whose sync.Pool drops a random share
// of the values put back, so allocation counts are not meaningful.
const raceEnabled = true
