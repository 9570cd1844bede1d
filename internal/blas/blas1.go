package blas

import "fmt"

// Axpy computes y += alpha·x, the update step of gradient descent and of
// accumulating gradients. It panics if the lengths differ.
func Axpy(alpha float32, x, y []float32) {
	if len(x) != len(y) {
		panic(fmt.Sprintf("blas.Axpy: lengths differ: len(x) = %d, len(y) = %d", len(x), len(y)))
	}
	for i, v := range x {
		y[i] += alpha * v
	}
}
