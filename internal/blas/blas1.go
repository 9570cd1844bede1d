package blas

import "fmt"

// Dot returns the inner product Σ a[i]·b[i]. Small layers use it where a
// full Gemm would cost more in packing than in arithmetic. It panics if the
// lengths differ, because a silently truncated sum would be a wrong answer.
func Dot(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("blas.Dot: lengths differ: %d and %d", len(a), len(b)))
	}
	// Four independent partial sums break the dependency chain between
	// additions and keep the rounding error growth lower than one long sum.
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

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
