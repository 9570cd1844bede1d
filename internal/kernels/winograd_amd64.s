#include "textflag.h"

// func winoInputAVX2(p *float32, rs, ps, c int, out *float32, ds int)
//
// V = Bᵀ·d·B for c channels (a multiple of 8) of the 4×4 tile whose pixel
// (i, j) starts at p[i·rs+j·ps]; V[ξ] is written at out[ξ·ds:]. Strides
// are in elements. Requires AVX2.
TEXT ·winoInputAVX2(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), SI
	MOVQ rs+8(FP), R8
	MOVQ ps+16(FP), R9
	MOVQ c+24(FP), CX
	MOVQ out+32(FP), DI
	MOVQ ds+40(FP), R14
	SHLQ $2, R8
	SHLQ $2, R9
	SHLQ $2, R14
	LEAQ (R9)(R9*2), R13
	LEAQ (R14)(R14*2), R15
	LEAQ (SI)(R8*1), R10
	LEAQ (SI)(R8*2), R11
	LEAQ (R10)(R8*2), R12
	LEAQ (DI)(R14*4), BX
	LEAQ (BX)(R14*4), DX
	LEAQ (DX)(R14*4), AX
	SHRQ $3, CX

inloop:
	VMOVUPS (SI), Y0
	VSUBPS (R11), Y0, Y0
	VMOVUPS (SI)(R9*1), Y1
	VSUBPS (R11)(R9*1), Y1, Y1
	VMOVUPS (SI)(R9*2), Y2
	VSUBPS (R11)(R9*2), Y2, Y2
	VMOVUPS (SI)(R13*1), Y3
	VSUBPS (R11)(R13*1), Y3, Y3
	VSUBPS Y2, Y0, Y4
	VADDPS Y2, Y1, Y5
	VSUBPS Y1, Y2, Y6
	VSUBPS Y3, Y1, Y7
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, (DI)(R14*1)
	VMOVUPS Y6, (DI)(R14*2)
	VMOVUPS Y7, (DI)(R15*1)
	VMOVUPS (R10), Y0
	VADDPS (R11), Y0, Y0
	VMOVUPS (R10)(R9*1), Y1
	VADDPS (R11)(R9*1), Y1, Y1
	VMOVUPS (R10)(R9*2), Y2
	VADDPS (R11)(R9*2), Y2, Y2
	VMOVUPS (R10)(R13*1), Y3
	VADDPS (R11)(R13*1), Y3, Y3
	VSUBPS Y2, Y0, Y4
	VADDPS Y2, Y1, Y5
	VSUBPS Y1, Y2, Y6
	VSUBPS Y3, Y1, Y7
	VMOVUPS Y4, (BX)
	VMOVUPS Y5, (BX)(R14*1)
	VMOVUPS Y6, (BX)(R14*2)
	VMOVUPS Y7, (BX)(R15*1)
	VMOVUPS (R11), Y0
	VSUBPS (R10), Y0, Y0
	VMOVUPS (R11)(R9*1), Y1
	VSUBPS (R10)(R9*1), Y1, Y1
	VMOVUPS (R11)(R9*2), Y2
	VSUBPS (R10)(R9*2), Y2, Y2
	VMOVUPS (R11)(R13*1), Y3
	VSUBPS (R10)(R13*1), Y3, Y3
	VSUBPS Y2, Y0, Y4
	VADDPS Y2, Y1, Y5
	VSUBPS Y1, Y2, Y6
	VSUBPS Y3, Y1, Y7
	VMOVUPS Y4, (DX)
	VMOVUPS Y5, (DX)(R14*1)
	VMOVUPS Y6, (DX)(R14*2)
	VMOVUPS Y7, (DX)(R15*1)
	VMOVUPS (R10), Y0
	VSUBPS (R12), Y0, Y0
	VMOVUPS (R10)(R9*1), Y1
	VSUBPS (R12)(R9*1), Y1, Y1
	VMOVUPS (R10)(R9*2), Y2
	VSUBPS (R12)(R9*2), Y2, Y2
	VMOVUPS (R10)(R13*1), Y3
	VSUBPS (R12)(R13*1), Y3, Y3
	VSUBPS Y2, Y0, Y4
	VADDPS Y2, Y1, Y5
	VSUBPS Y1, Y2, Y6
	VSUBPS Y3, Y1, Y7
	VMOVUPS Y4, (AX)
	VMOVUPS Y5, (AX)(R14*1)
	VMOVUPS Y6, (AX)(R14*2)
	VMOVUPS Y7, (AX)(R15*1)
	ADDQ $32, SI
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, R12
	ADDQ $32, DI
	ADDQ $32, BX
	ADDQ $32, DX
	ADDQ $32, AX
	DECQ CX
	JNE inloop
	VZEROUPPER
	RET

// func winoOutputAVX2(src *float32, ss, m int, bias *float32, relu bool, d0, d1, d2, d3 *float32)
//
// Y = Aᵀ·Mξ·A + bias, then max(·, 0) when relu, for m channels (a multiple
// of 8), where Mξ starts at src[ξ·ss] (ss in elements); output pixel
// (i, j) of the 2×2 block goes to d(2i+j). Requires AVX2.
TEXT ·winoOutputAVX2(SB), NOSPLIT, $0-72
	MOVQ src+0(FP), SI
	MOVQ ss+8(FP), R9
	MOVQ m+16(FP), CX
	MOVQ bias+24(FP), BX
	MOVBLZX relu+32(FP), R15
	MOVQ d0+40(FP), DI
	MOVQ d1+48(FP), DX
	MOVQ d2+56(FP), AX
	MOVQ d3+64(FP), R8
	SHLQ $2, R9
	LEAQ (R9)(R9*2), R13
	LEAQ (SI)(R9*4), R10
	LEAQ (R10)(R9*4), R11
	LEAQ (R11)(R9*4), R12
	VXORPS Y15, Y15, Y15
	SHRQ $3, CX

outloop:
	VMOVUPS (R10), Y8
	VADDPS (SI), Y8, Y0
	VADDPS (R11), Y0, Y0
	VSUBPS (R11), Y8, Y4
	VSUBPS (R12), Y4, Y4
	VMOVUPS (R10)(R9*1), Y8
	VADDPS (SI)(R9*1), Y8, Y1
	VADDPS (R11)(R9*1), Y1, Y1
	VSUBPS (R11)(R9*1), Y8, Y5
	VSUBPS (R12)(R9*1), Y5, Y5
	VMOVUPS (R10)(R9*2), Y8
	VADDPS (SI)(R9*2), Y8, Y2
	VADDPS (R11)(R9*2), Y2, Y2
	VSUBPS (R11)(R9*2), Y8, Y6
	VSUBPS (R12)(R9*2), Y6, Y6
	VMOVUPS (R10)(R13*1), Y8
	VADDPS (SI)(R13*1), Y8, Y3
	VADDPS (R11)(R13*1), Y3, Y3
	VSUBPS (R11)(R13*1), Y8, Y7
	VSUBPS (R12)(R13*1), Y7, Y7
	VMOVUPS (BX), Y14
	VADDPS Y1, Y0, Y8
	VADDPS Y2, Y8, Y8
	VADDPS Y14, Y8, Y8
	VSUBPS Y2, Y1, Y9
	VSUBPS Y3, Y9, Y9
	VADDPS Y14, Y9, Y9
	VADDPS Y5, Y4, Y10
	VADDPS Y6, Y10, Y10
	VADDPS Y14, Y10, Y10
	VSUBPS Y6, Y5, Y11
	VSUBPS Y7, Y11, Y11
	VADDPS Y14, Y11, Y11
	TESTQ R15, R15
	JEQ outstore
	VMAXPS Y15, Y8, Y8
	VMAXPS Y15, Y9, Y9
	VMAXPS Y15, Y10, Y10
	VMAXPS Y15, Y11, Y11

outstore:
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, (DX)
	VMOVUPS Y10, (AX)
	VMOVUPS Y11, (R8)
	ADDQ $32, SI
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, R12
	ADDQ $32, BX
	ADDQ $32, DI
	ADDQ $32, DX
	ADDQ $32, AX
	ADDQ $32, R8
	DECQ CX
	JNE outloop
	VZEROUPPER
	RET

// func max4AVX2(dst, a, b, c, d *float32, n int)
//
// dst[i] = max(a[i], b[i], c[i], d[i]) for i < n, n a positive multiple
// of 8: the 2×2 max pool fused into the Winograd output transform.
TEXT ·max4AVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), R8
	MOVQ c+24(FP), R9
	MOVQ d+32(FP), R10
	MOVQ n+40(FP), CX
	XORQ AX, AX

max4loop:
	VMOVUPS (SI)(AX*4), Y0
	VMAXPS (R8)(AX*4), Y0, Y0
	VMOVUPS (R9)(AX*4), Y1
	VMAXPS (R10)(AX*4), Y1, Y1
	VMAXPS Y1, Y0, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	CMPQ AX, CX
	JLT max4loop
	VZEROUPPER
	RET
