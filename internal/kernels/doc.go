// Package kernels holds the stateless numerical kernels of the project,
// shared by training (package nn) and inference (package runtime): they
// work on plain float32 slices in NHWC layout (batch, height, width,
// channels) with shapes passed as values, keep no state between calls and
// take their temporary memory from a caller-owned Scratch. Each fast
// kernel has a simple reference version in the tests it is compared with
// on random odd sizes.
//
// Work is split between goroutines only through package parallel.
package kernels
