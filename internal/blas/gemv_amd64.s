#include "textflag.h"

// func gemv16AVX2(k int, x *float32, b *float32, ldb int, y *float32)
//
// y[0:16] = Σ_q x[q]·b[q·ldb : q·ldb+16] for q < k (k ≥ 1, ldb in
// elements): one row of A times one 16-column micro-panel of B. Four
// k steps are in flight in separate accumulators, so the loop is bound by
// loads rather than by the latency of the multiply-adds. Requires AVX2 and
// FMA.
TEXT ·gemv16AVX2(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ ldb+24(FP), R9
	MOVQ y+32(FP), DX
	SHLQ $2, R9
	LEAQ (R9)(R9*2), R10
	LEAQ (R9*4), R11
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	CMPQ CX, $4
	JLT tail

loop4:
	VBROADCASTSS (SI), Y8
	VFMADD231PS (DI), Y8, Y0
	VFMADD231PS 32(DI), Y8, Y1
	VBROADCASTSS 4(SI), Y9
	VFMADD231PS (DI)(R9*1), Y9, Y2
	VFMADD231PS 32(DI)(R9*1), Y9, Y3
	VBROADCASTSS 8(SI), Y10
	VFMADD231PS (DI)(R9*2), Y10, Y4
	VFMADD231PS 32(DI)(R9*2), Y10, Y5
	VBROADCASTSS 12(SI), Y11
	VFMADD231PS (DI)(R10*1), Y11, Y6
	VFMADD231PS 32(DI)(R10*1), Y11, Y7
	ADDQ $16, SI
	ADDQ R11, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE loop4

tail:
	TESTQ CX, CX
	JEQ done

loop1:
	VBROADCASTSS (SI), Y8
	VFMADD231PS (DI), Y8, Y0
	VFMADD231PS 32(DI), Y8, Y1
	ADDQ $4, SI
	ADDQ R9, DI
	DECQ CX
	JNE loop1

done:
	VADDPS Y2, Y0, Y0
	VADDPS Y3, Y1, Y1
	VADDPS Y6, Y4, Y4
	VADDPS Y7, Y5, Y5
	VADDPS Y4, Y0, Y0
	VADDPS Y5, Y1, Y1
	VMOVUPS Y0, (DX)
	VMOVUPS Y1, 32(DX)
	VZEROUPPER
	RET
