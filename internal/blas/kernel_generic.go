package blas

// goKernel is the portable micro-kernel. It uses the same 6×16 register
// tile and blocking as the AVX2 kernel so that both exercise the same packing
// code, and it is what runs on machines without AVX2 and FMA.
var goKernel = kernel{
	name: "go-6x16",
	mr:   6, nr: 16,
	kc: 256, mc: 96,
	fn:   kern6x16Go,
	gemv: gemv16Go,
}

// gemv16Go is the portable kernel.gemv.
func gemv16Go(k int, x, b []float32, ldb int, y []float32) {
	var acc [16]float32
	b = b[:(k-1)*ldb+16]
	for q, xq := range x[:k] {
		bq := (*[16]float32)(b[q*ldb:])
		for j, bj := range bq {
			acc[j] += xq * bj
		}
	}
	*(*[16]float32)(y) = acc
}

// kern6x16Go computes a 6×16 tile; see kernel.fn for the contract.
func kern6x16Go(k int, a []float32, ars, aks int, b []float32, ldb int, c []float32, ldc int, alpha, beta float32) {
	const mr, nr = 6, 16
	var acc [mr][nr]float32
	a = a[:(mr-1)*ars+(k-1)*aks+1]
	b = b[:(k-1)*ldb+nr]
	for q := 0; q < k; q++ {
		bq := (*[nr]float32)(b[q*ldb:])
		for i := range acc {
			ai := a[i*ars+q*aks]
			row := &acc[i]
			for j, bj := range bq {
				row[j] += ai * bj
			}
		}
	}
	for i := range acc {
		ci := (*[nr]float32)(c[i*ldc:])
		for j, v := range acc[i] {
			if beta == 0 {
				ci[j] = alpha * v
			} else {
				ci[j] = alpha*v + beta*ci[j]
			}
		}
	}
}
