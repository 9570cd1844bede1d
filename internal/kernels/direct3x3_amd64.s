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

// func conv3x3Row16AVX512(in *float32, prs int, wt, bias, res *float32, flags int, out *float32, w int)
//
// One output row of a 3×3 convolution of 16 channels into 16 (ResNet's
// first stage): out[x·16+k] = bias[k] (+ res[x·16+k] with flags bit 1) +
// Σ_ky Σ_j<48 in[ky·prs + x·16 + j]·wt[(ky·48 + j)·16 + k], then max(·, 0)
// with flags bit 0. in holds three zero-padded input rows of stride prs
// bytes. The 16 outputs of a pixel are one register: 14 pixels at a time
// (14 accumulators), each tap one load of its 16 weights and 14
// multiply-adds reading the pixels' input values as broadcasts (pixel
// stride 64 bytes, a constant displacement), then pixels one at a time.
// Requires AVX-512F.
TEXT ·conv3x3Row16AVX512(SB), NOSPLIT, $0-64
	MOVQ in+0(FP), SI
	MOVQ prs+8(FP), R8
	MOVQ bias+24(FP), R14
	MOVQ res+32(FP), R13
	MOVQ flags+40(FP), BX
	MOVQ out+48(FP), DI
	MOVQ w+56(FP), CX
	VPXORD Z31, Z31, Z31
	VMOVUPS (R14), Z30
r16block:
	CMPQ CX, $14
	JLT r16tail
	VMOVAPS Z30, Z0
	VMOVAPS Z30, Z1
	VMOVAPS Z30, Z2
	VMOVAPS Z30, Z3
	VMOVAPS Z30, Z4
	VMOVAPS Z30, Z5
	VMOVAPS Z30, Z6
	VMOVAPS Z30, Z7
	VMOVAPS Z30, Z8
	VMOVAPS Z30, Z9
	VMOVAPS Z30, Z10
	VMOVAPS Z30, Z11
	VMOVAPS Z30, Z12
	VMOVAPS Z30, Z13
	MOVQ wt+16(FP), R10
	MOVQ SI, R11 // kernel row
	MOVQ $3, R12
r16krow:
	MOVQ R11, R9
	MOVQ $48, DX
r16tap:
	VMOVUPS (R10), Z14
	VFMADD231PS.BCST 0(R9), Z14, Z0
	VFMADD231PS.BCST 64(R9), Z14, Z1
	VFMADD231PS.BCST 128(R9), Z14, Z2
	VFMADD231PS.BCST 192(R9), Z14, Z3
	VFMADD231PS.BCST 256(R9), Z14, Z4
	VFMADD231PS.BCST 320(R9), Z14, Z5
	VFMADD231PS.BCST 384(R9), Z14, Z6
	VFMADD231PS.BCST 448(R9), Z14, Z7
	VFMADD231PS.BCST 512(R9), Z14, Z8
	VFMADD231PS.BCST 576(R9), Z14, Z9
	VFMADD231PS.BCST 640(R9), Z14, Z10
	VFMADD231PS.BCST 704(R9), Z14, Z11
	VFMADD231PS.BCST 768(R9), Z14, Z12
	VFMADD231PS.BCST 832(R9), Z14, Z13
	ADDQ $4, R9
	ADDQ $64, R10
	DECQ DX
	JNZ r16tap
	ADDQ R8, R11
	DECQ R12
	JNZ r16krow
	TESTQ $2, BX
	JZ r16norres
	VADDPS 0(R13), Z0, Z0
	VADDPS 64(R13), Z1, Z1
	VADDPS 128(R13), Z2, Z2
	VADDPS 192(R13), Z3, Z3
	VADDPS 256(R13), Z4, Z4
	VADDPS 320(R13), Z5, Z5
	VADDPS 384(R13), Z6, Z6
	VADDPS 448(R13), Z7, Z7
	VADDPS 512(R13), Z8, Z8
	VADDPS 576(R13), Z9, Z9
	VADDPS 640(R13), Z10, Z10
	VADDPS 704(R13), Z11, Z11
	VADDPS 768(R13), Z12, Z12
	VADDPS 832(R13), Z13, Z13
	ADDQ $896, R13
r16norres:
	TESTQ $1, BX
	JZ r16store
	VMAXPS Z31, Z0, Z0
	VMAXPS Z31, Z1, Z1
	VMAXPS Z31, Z2, Z2
	VMAXPS Z31, Z3, Z3
	VMAXPS Z31, Z4, Z4
	VMAXPS Z31, Z5, Z5
	VMAXPS Z31, Z6, Z6
	VMAXPS Z31, Z7, Z7
	VMAXPS Z31, Z8, Z8
	VMAXPS Z31, Z9, Z9
	VMAXPS Z31, Z10, Z10
	VMAXPS Z31, Z11, Z11
	VMAXPS Z31, Z12, Z12
	VMAXPS Z31, Z13, Z13
r16store:
	VMOVUPS Z0, 0(DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	VMOVUPS Z4, 256(DI)
	VMOVUPS Z5, 320(DI)
	VMOVUPS Z6, 384(DI)
	VMOVUPS Z7, 448(DI)
	VMOVUPS Z8, 512(DI)
	VMOVUPS Z9, 576(DI)
	VMOVUPS Z10, 640(DI)
	VMOVUPS Z11, 704(DI)
	VMOVUPS Z12, 768(DI)
	VMOVUPS Z13, 832(DI)
	ADDQ $896, SI
	ADDQ $896, DI
	SUBQ $14, CX
	JMP r16block
r16tail:
	TESTQ CX, CX
	JZ r16done
	VMOVAPS Z30, Z0
	MOVQ wt+16(FP), R10
	MOVQ SI, R11
	MOVQ $3, R12
r16tkrow:
	MOVQ R11, R9
	MOVQ $48, DX
r16ttap:
	VMOVUPS (R10), Z14
	VFMADD231PS.BCST (R9), Z14, Z0
	ADDQ $4, R9
	ADDQ $64, R10
	DECQ DX
	JNZ r16ttap
	ADDQ R8, R11
	DECQ R12
	JNZ r16tkrow
	TESTQ $2, BX
	JZ r16tnores
	VADDPS (R13), Z0, Z0
	ADDQ $64, R13
r16tnores:
	TESTQ $1, BX
	JZ r16tstore
	VMAXPS Z31, Z0, Z0
r16tstore:
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JMP r16tail
r16done:
	VZEROUPPER
	RET
