#include "textflag.h"

// func conv3x3RowAVX2(in *float32, prs, c3 int, wt *float32, m int, bias *float32, relu bool, out *float32, w, c int)
//
// One output row of a 3×3 convolution: for each of w pixels x and each
// block of 32 of the m output channels, out[x·m+k] = bias[k] +
// Σ_ky Σ_j<c3 in[ky·prs + x·c + j]·wt[(ky·c3 + j)·m + k], then max(·, 0)
// when relu. in holds three zero-padded input rows of stride prs; c3 = 3c.
// Strides and counts are in elements; m is a multiple of 32, c3 ≥ 1.
// Pixels go in pairs (8 accumulators, so that the multiply-adds of one
// tap do not wait for those of the previous one), an odd last pixel alone.
// Requires AVX2 and FMA.
TEXT ·conv3x3RowAVX2(SB), NOSPLIT, $0-80
	MOVQ prs+8(FP), R8
	SHLQ $2, R8          // padded row stride in bytes
	MOVQ m+32(FP), R9
	SHLQ $2, R9          // one weight row in bytes
	MOVQ c+72(FP), R10
	SHLQ $2, R10         // one input pixel in bytes
	MOVBLZX relu+48(FP), R11
	MOVQ out+56(FP), DI
	MOVQ in+0(FP), SI    // first tap of the current pixel
	VXORPS Y15, Y15, Y15
	MOVQ w+64(FP), DX
	SHRQ $1, DX          // pixel pairs
	JEQ single

pair:
	MOVQ wt+24(FP), R13
	MOVQ bias+40(FP), R14
	XORQ R15, R15        // channel offset in bytes

pblock:
	VMOVUPS (R14)(R15*1), Y0
	VMOVUPS 32(R14)(R15*1), Y1
	VMOVUPS 64(R14)(R15*1), Y2
	VMOVUPS 96(R14)(R15*1), Y3
	VMOVAPS Y0, Y4
	VMOVAPS Y1, Y5
	VMOVAPS Y2, Y6
	VMOVAPS Y3, Y7
	LEAQ (R13)(R15*1), BX // weight row of the first tap
	MOVQ SI, AX           // kernel row, pixel 0 (pixel 1 at +R10)
	MOVQ $3, R12

pkrow:
	MOVQ c3+16(FP), CX

ptap:
	VMOVUPS (BX), Y8
	VMOVUPS 32(BX), Y9
	VMOVUPS 64(BX), Y10
	VMOVUPS 96(BX), Y11
	VBROADCASTSS (AX), Y12
	VBROADCASTSS (AX)(R10*1), Y13
	VFMADD231PS Y8, Y12, Y0
	VFMADD231PS Y9, Y12, Y1
	VFMADD231PS Y10, Y12, Y2
	VFMADD231PS Y11, Y12, Y3
	VFMADD231PS Y8, Y13, Y4
	VFMADD231PS Y9, Y13, Y5
	VFMADD231PS Y10, Y13, Y6
	VFMADD231PS Y11, Y13, Y7
	ADDQ $4, AX
	ADDQ R9, BX
	DECQ CX
	JNE ptap
	MOVQ c3+16(FP), CX
	SHLQ $2, CX
	SUBQ CX, AX          // back to the row's first tap
	ADDQ R8, AX
	DECQ R12
	JNE pkrow

	TESTQ R11, R11
	JEQ pstore
	VMAXPS Y15, Y0, Y0
	VMAXPS Y15, Y1, Y1
	VMAXPS Y15, Y2, Y2
	VMAXPS Y15, Y3, Y3
	VMAXPS Y15, Y4, Y4
	VMAXPS Y15, Y5, Y5
	VMAXPS Y15, Y6, Y6
	VMAXPS Y15, Y7, Y7

pstore:
	VMOVUPS Y0, (DI)(R15*1)
	VMOVUPS Y1, 32(DI)(R15*1)
	VMOVUPS Y2, 64(DI)(R15*1)
	VMOVUPS Y3, 96(DI)(R15*1)
	LEAQ (DI)(R9*1), AX
	VMOVUPS Y4, (AX)(R15*1)
	VMOVUPS Y5, 32(AX)(R15*1)
	VMOVUPS Y6, 64(AX)(R15*1)
	VMOVUPS Y7, 96(AX)(R15*1)
	ADDQ $128, R15
	CMPQ R15, R9
	JLT pblock

	LEAQ (DI)(R9*2), DI
	LEAQ (SI)(R10*2), SI
	DECQ DX
	JNE pair

single:
	MOVQ w+64(FP), DX
	ANDQ $1, DX
	JEQ done
	MOVQ wt+24(FP), R13
	MOVQ bias+40(FP), R14
	XORQ R15, R15

sblock:
	VMOVUPS (R14)(R15*1), Y0
	VMOVUPS 32(R14)(R15*1), Y1
	VMOVUPS 64(R14)(R15*1), Y2
	VMOVUPS 96(R14)(R15*1), Y3
	LEAQ (R13)(R15*1), BX
	MOVQ SI, AX
	MOVQ $3, R12

skrow:
	MOVQ c3+16(FP), CX
	MOVQ AX, DX

stap:
	VBROADCASTSS (DX), Y12
	VFMADD231PS (BX), Y12, Y0
	VFMADD231PS 32(BX), Y12, Y1
	VFMADD231PS 64(BX), Y12, Y2
	VFMADD231PS 96(BX), Y12, Y3
	ADDQ $4, DX
	ADDQ R9, BX
	DECQ CX
	JNE stap
	ADDQ R8, AX
	DECQ R12
	JNE skrow

	TESTQ R11, R11
	JEQ sstore
	VMAXPS Y15, Y0, Y0
	VMAXPS Y15, Y1, Y1
	VMAXPS Y15, Y2, Y2
	VMAXPS Y15, Y3, Y3

sstore:
	VMOVUPS Y0, (DI)(R15*1)
	VMOVUPS Y1, 32(DI)(R15*1)
	VMOVUPS Y2, 64(DI)(R15*1)
	VMOVUPS Y3, 96(DI)(R15*1)
	ADDQ $128, R15
	CMPQ R15, R9
	JLT sblock

done:
	VZEROUPPER
	RET
