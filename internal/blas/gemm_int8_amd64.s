#include "textflag.h"

// func int8Kern6x16AVX2(kp2 int, a *uint8, lda int, panel *int16, c *int32)
//
// Requires AVX2. Y0..Y11 accumulate the 6×16 int32 tile, row r in Y(2r) and
// Y(2r+1); Y12, Y13 hold the panel's 16 column pairs for the current pair of k;
// Y14 broadcasts one row's pair of A bytes (VPBROADCASTW) widened to two int16
// per 32-bit lane (VPMOVZXBW); Y15 is the product. VPMADDWD multiplies int16 pairs and adds them into int32 exactly.
TEXT ·int8Kern6x16AVX2(SB), NOSPLIT, $0-40
	MOVQ kp2+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R8
	MOVQ panel+24(FP), DI
	MOVQ c+32(FP), DX
	// R8, R9, R10 = 1, 3 and 5 rows of A in bytes.
	LEAQ (R8)(R8*2), R9
	LEAQ (R8)(R8*4), R10
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	VPXOR Y4, Y4, Y4
	VPXOR Y5, Y5, Y5
	VPXOR Y6, Y6, Y6
	VPXOR Y7, Y7, Y7
	VPXOR Y8, Y8, Y8
	VPXOR Y9, Y9, Y9
	VPXOR Y10, Y10, Y10
	VPXOR Y11, Y11, Y11
loop:
	VMOVDQU (DI), Y12
	VMOVDQU 32(DI), Y13
	VPBROADCASTW (SI), X14
	VPMOVZXBW X14, Y14
	VPMADDWD Y12, Y14, Y15
	VPADDD Y15, Y0, Y0
	VPMADDWD Y13, Y14, Y15
	VPADDD Y15, Y1, Y1
	VPBROADCASTW (SI)(R8*1), X14
	VPMOVZXBW X14, Y14
	VPMADDWD Y12, Y14, Y15
	VPADDD Y15, Y2, Y2
	VPMADDWD Y13, Y14, Y15
	VPADDD Y15, Y3, Y3
	VPBROADCASTW (SI)(R8*2), X14
	VPMOVZXBW X14, Y14
	VPMADDWD Y12, Y14, Y15
	VPADDD Y15, Y4, Y4
	VPMADDWD Y13, Y14, Y15
	VPADDD Y15, Y5, Y5
	VPBROADCASTW (SI)(R9*1), X14
	VPMOVZXBW X14, Y14
	VPMADDWD Y12, Y14, Y15
	VPADDD Y15, Y6, Y6
	VPMADDWD Y13, Y14, Y15
	VPADDD Y15, Y7, Y7
	VPBROADCASTW (SI)(R8*4), X14
	VPMOVZXBW X14, Y14
	VPMADDWD Y12, Y14, Y15
	VPADDD Y15, Y8, Y8
	VPMADDWD Y13, Y14, Y15
	VPADDD Y15, Y9, Y9
	VPBROADCASTW (SI)(R10*1), X14
	VPMOVZXBW X14, Y14
	VPMADDWD Y12, Y14, Y15
	VPADDD Y15, Y10, Y10
	VPMADDWD Y13, Y14, Y15
	VPADDD Y15, Y11, Y11
	ADDQ $2, SI
	ADDQ $64, DI
	DECQ CX
	JNZ loop
	VMOVDQU Y0, 0(DX)
	VMOVDQU Y1, 32(DX)
	VMOVDQU Y2, 64(DX)
	VMOVDQU Y3, 96(DX)
	VMOVDQU Y4, 128(DX)
	VMOVDQU Y5, 160(DX)
	VMOVDQU Y6, 192(DX)
	VMOVDQU Y7, 224(DX)
	VMOVDQU Y8, 256(DX)
	VMOVDQU Y9, 288(DX)
	VMOVDQU Y10, 320(DX)
	VMOVDQU Y11, 352(DX)
	VZEROUPPER
	RET

// ZERO_ACC24 clears the 24 accumulators Z0…Z23 of the VNNI kernels;
// STORE_ACC24 stores them to the tile at DX, 64 bytes apart (a row of 32
// columns is two of them, a row of 16 one).
#define ZERO_ACC24 \
	VPXORD Z0, Z0, Z0; \
	VPXORD Z1, Z1, Z1; \
	VPXORD Z2, Z2, Z2; \
	VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; \
	VPXORD Z5, Z5, Z5; \
	VPXORD Z6, Z6, Z6; \
	VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; \
	VPXORD Z9, Z9, Z9; \
	VPXORD Z10, Z10, Z10; \
	VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15; \
	VPXORD Z16, Z16, Z16; \
	VPXORD Z17, Z17, Z17; \
	VPXORD Z18, Z18, Z18; \
	VPXORD Z19, Z19, Z19; \
	VPXORD Z20, Z20, Z20; \
	VPXORD Z21, Z21, Z21; \
	VPXORD Z22, Z22, Z22; \
	VPXORD Z23, Z23, Z23

#define STORE_ACC24 \
	VMOVDQU32 Z0, 0(DX); \
	VMOVDQU32 Z1, 64(DX); \
	VMOVDQU32 Z2, 128(DX); \
	VMOVDQU32 Z3, 192(DX); \
	VMOVDQU32 Z4, 256(DX); \
	VMOVDQU32 Z5, 320(DX); \
	VMOVDQU32 Z6, 384(DX); \
	VMOVDQU32 Z7, 448(DX); \
	VMOVDQU32 Z8, 512(DX); \
	VMOVDQU32 Z9, 576(DX); \
	VMOVDQU32 Z10, 640(DX); \
	VMOVDQU32 Z11, 704(DX); \
	VMOVDQU32 Z12, 768(DX); \
	VMOVDQU32 Z13, 832(DX); \
	VMOVDQU32 Z14, 896(DX); \
	VMOVDQU32 Z15, 960(DX); \
	VMOVDQU32 Z16, 1024(DX); \
	VMOVDQU32 Z17, 1088(DX); \
	VMOVDQU32 Z18, 1152(DX); \
	VMOVDQU32 Z19, 1216(DX); \
	VMOVDQU32 Z20, 1280(DX); \
	VMOVDQU32 Z21, 1344(DX); \
	VMOVDQU32 Z22, 1408(DX); \
	VMOVDQU32 Z23, 1472(DX)

// func int8Kern12x32VNNI(kq int, a *uint8, lda int, panel *int8, c *int32)
//
// Requires AVX-512F and AVX-512 VNNI. Z0..Z23 accumulate the 12×32 int32
// tile, row r in Z(2r) and Z(2r+1); Z24, Z25 hold the panel's 32 columns'
// quads of int8 weights for the current quad of k; Z26 broadcasts one
// row's four uint8 codes (VPBROADCASTD). VPDPBUSD multiplies the uint8 ×
// int8 quads and adds their sum into each int32 lane exactly (the sums of
// the products fit: see maxInt8K). SI walks rows 0–5 of A, R11 rows 6–11.
TEXT ·int8Kern12x32VNNI(SB), NOSPLIT, $0-40
	MOVQ kq+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R8
	MOVQ panel+24(FP), DI
	MOVQ c+32(FP), DX
	// R9, R10 = 3 and 5 rows of A in bytes; R11 = row 6.
	LEAQ (R8)(R8*2), R9
	LEAQ (R8)(R8*4), R10
	LEAQ (SI)(R9*2), R11
	ZERO_ACC24
vnniloop:
	VMOVDQU32 (DI), Z24
	VMOVDQU32 64(DI), Z25
	VPBROADCASTD (SI), Z26
	VPDPBUSD Z24, Z26, Z0
	VPDPBUSD Z25, Z26, Z1
	VPBROADCASTD (SI)(R8*1), Z26
	VPDPBUSD Z24, Z26, Z2
	VPDPBUSD Z25, Z26, Z3
	VPBROADCASTD (SI)(R8*2), Z26
	VPDPBUSD Z24, Z26, Z4
	VPDPBUSD Z25, Z26, Z5
	VPBROADCASTD (SI)(R9*1), Z26
	VPDPBUSD Z24, Z26, Z6
	VPDPBUSD Z25, Z26, Z7
	VPBROADCASTD (SI)(R8*4), Z26
	VPDPBUSD Z24, Z26, Z8
	VPDPBUSD Z25, Z26, Z9
	VPBROADCASTD (SI)(R10*1), Z26
	VPDPBUSD Z24, Z26, Z10
	VPDPBUSD Z25, Z26, Z11
	VPBROADCASTD (R11), Z26
	VPDPBUSD Z24, Z26, Z12
	VPDPBUSD Z25, Z26, Z13
	VPBROADCASTD (R11)(R8*1), Z26
	VPDPBUSD Z24, Z26, Z14
	VPDPBUSD Z25, Z26, Z15
	VPBROADCASTD (R11)(R8*2), Z26
	VPDPBUSD Z24, Z26, Z16
	VPDPBUSD Z25, Z26, Z17
	VPBROADCASTD (R11)(R9*1), Z26
	VPDPBUSD Z24, Z26, Z18
	VPDPBUSD Z25, Z26, Z19
	VPBROADCASTD (R11)(R8*4), Z26
	VPDPBUSD Z24, Z26, Z20
	VPDPBUSD Z25, Z26, Z21
	VPBROADCASTD (R11)(R10*1), Z26
	VPDPBUSD Z24, Z26, Z22
	VPDPBUSD Z25, Z26, Z23
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $128, DI
	DECQ CX
	JNZ vnniloop
	STORE_ACC24
	VZEROUPPER
	RET


// func int8Kern24x16VNNI(kq int, a *uint8, lda int, panel *int8, c *int32)
//
// Requires AVX-512 VNNI. The 24×16 tile c (row stride 16) = a·panel over
// kq quads of k: per quad one load of the panel's 16 columns × 4 k, and
// for each of the 24 rows a broadcast of its four A bytes and one
// VPDPBUSD. For products of at most 16 columns (ResNet's 16-channel
// stage), which fill only half of the 12×32 kernel's tile.
TEXT ·int8Kern24x16VNNI(SB), NOSPLIT, $0-40
	MOVQ kq+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R8
	MOVQ panel+24(FP), DI
	MOVQ c+32(FP), DX
	// R9, R10 = 3 and 5 rows of A in bytes; R11, R12, R13 = rows 6, 12, 18.
	LEAQ (R8)(R8*2), R9
	LEAQ (R8)(R8*4), R10
	LEAQ (SI)(R9*2), R11
	LEAQ (R11)(R9*2), R12
	LEAQ (R12)(R9*2), R13
	ZERO_ACC24
vnni16loop:
	VMOVDQU32 (DI), Z24
	VPBROADCASTD (SI), Z25
	VPDPBUSD Z24, Z25, Z0
	VPBROADCASTD (SI)(R8*1), Z26
	VPDPBUSD Z24, Z26, Z1
	VPBROADCASTD (SI)(R8*2), Z25
	VPDPBUSD Z24, Z25, Z2
	VPBROADCASTD (SI)(R9*1), Z26
	VPDPBUSD Z24, Z26, Z3
	VPBROADCASTD (SI)(R8*4), Z25
	VPDPBUSD Z24, Z25, Z4
	VPBROADCASTD (SI)(R10*1), Z26
	VPDPBUSD Z24, Z26, Z5
	VPBROADCASTD (R11), Z25
	VPDPBUSD Z24, Z25, Z6
	VPBROADCASTD (R11)(R8*1), Z26
	VPDPBUSD Z24, Z26, Z7
	VPBROADCASTD (R11)(R8*2), Z25
	VPDPBUSD Z24, Z25, Z8
	VPBROADCASTD (R11)(R9*1), Z26
	VPDPBUSD Z24, Z26, Z9
	VPBROADCASTD (R11)(R8*4), Z25
	VPDPBUSD Z24, Z25, Z10
	VPBROADCASTD (R11)(R10*1), Z26
	VPDPBUSD Z24, Z26, Z11
	VPBROADCASTD (R12), Z25
	VPDPBUSD Z24, Z25, Z12
	VPBROADCASTD (R12)(R8*1), Z26
	VPDPBUSD Z24, Z26, Z13
	VPBROADCASTD (R12)(R8*2), Z25
	VPDPBUSD Z24, Z25, Z14
	VPBROADCASTD (R12)(R9*1), Z26
	VPDPBUSD Z24, Z26, Z15
	VPBROADCASTD (R12)(R8*4), Z25
	VPDPBUSD Z24, Z25, Z16
	VPBROADCASTD (R12)(R10*1), Z26
	VPDPBUSD Z24, Z26, Z17
	VPBROADCASTD (R13), Z25
	VPDPBUSD Z24, Z25, Z18
	VPBROADCASTD (R13)(R8*1), Z26
	VPDPBUSD Z24, Z26, Z19
	VPBROADCASTD (R13)(R8*2), Z25
	VPDPBUSD Z24, Z25, Z20
	VPBROADCASTD (R13)(R9*1), Z26
	VPDPBUSD Z24, Z26, Z21
	VPBROADCASTD (R13)(R8*4), Z25
	VPDPBUSD Z24, Z25, Z22
	VPBROADCASTD (R13)(R10*1), Z26
	VPDPBUSD Z24, Z26, Z23
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $4, R12
	ADDQ $4, R13
	ADDQ $64, DI
	DECQ CX
	JNZ vnni16loop
	STORE_ACC24
	VZEROUPPER
	RET

// QUANT_CONSTS sets the constants of QUANTIZE (with Z28 = 1/scale and
// Z29 = the zero point set by the caller): Z30 = 0, Z31 = 512.0,
// Z27 = −512.0, Z26 = 255. It uses AX.
#define QUANT_CONSTS \
	VPXORD Z30, Z30, Z30; \
	MOVL $0x44000000, AX; \
	VPBROADCASTD AX, Z31; \
	MOVL $0xc4000000, AX; \
	VPBROADCASTD AX, Z27; \
	MOVL $255, AX; \
	VPBROADCASTD AX, Z26

// QUANTIZE turns the float32 lanes of Z into uint8 codes in int32 lanes,
// the steps of QuantizeU8: × inv (Z28), NaN → 0 (through mask K), clamped
// to ±512, rounded to the nearest even integer (VCVTPS2DQ in the default
// rounding mode), + z (Z29), clamped to 0…255.
#define QUANTIZE(Z, K) \
	VMULPS Z28, Z, Z; \
	VCMPPS $3, Z, Z, K; \
	VMOVAPS Z30, K, Z; \
	VMINPS Z31, Z, Z; \
	VMAXPS Z27, Z, Z; \
	VCVTPS2DQ Z, Z; \
	VPADDD Z29, Z, Z; \
	VPMAXSD Z30, Z, Z; \
	VPMINSD Z26, Z, Z

// func requantTileAVX512(rows, cols int, s *int32, lds int, zs *int32, scale, bias *float32, flags int, inv float32, z int32, out unsafe.Pointer, ldo int, res *float32)
//
// Requires AVX-512F. The int8 epilogue of a tile of cols ≤ 32 columns:
// requantTileU8Go with flags bit 2, else requantTileF32Go (ldo in
// bytes, also res's row stride). The columns' zero-point sums, scales and
// biases are loaded once (two groups of 16, masked with K1 and K3), then
// per row: (s − zs) to float32, × scale, + bias (flags bit 0), + res
// (bit 3), max 0 (bit 1); stored as
// float32, or × inv, NaN → 0 (K2, K4), clamped to ±512, rounded to the
// nearest even integer (VCVTPS2DQ in the default rounding mode), + z,
// clamped to 0…255 and stored as bytes (VPMOVDB). Every step is the
// float32 operation the Go reference does, so the bits agree.
TEXT ·requantTileAVX512(SB), NOSPLIT, $0-96
	MOVQ rows+0(FP), R13
	MOVQ cols+8(FP), CX
	MOVQ s+16(FP), SI
	MOVQ lds+24(FP), R11
	SHLQ $2, R11
	MOVQ zs+32(FP), R8
	MOVQ scale+40(FP), R9
	MOVQ bias+48(FP), R10
	MOVQ flags+56(FP), BX
	MOVQ out+72(FP), DI
	MOVQ ldo+80(FP), R12
	MOVQ res+88(FP), R14
	// K1: columns 0…15, K3: columns 16…31.
	MOVL $0xffff, AX
	CMPQ CX, $16
	JGE rtlo
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
rtlo:
	KMOVW AX, K1
	XORL AX, AX
	SUBQ $16, CX
	JLE rthi
	MOVL $0xffff, AX
	CMPQ CX, $16
	JGE rthi
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
rthi:
	KMOVW AX, K3
	VBROADCASTSS inv+64(FP), Z28
	MOVL z+68(FP), AX
	VPBROADCASTD AX, Z29
	QUANT_CONSTS
	VMOVDQU32.Z (R8), K1, Z20
	VMOVDQU32.Z 64(R8), K3, Z21
	VMOVUPS.Z (R9), K1, Z22
	VMOVUPS.Z 64(R9), K3, Z23
	TESTQ $1, BX
	JZ rtrow
	VMOVUPS.Z (R10), K1, Z24
	VMOVUPS.Z 64(R10), K3, Z25
rtrow:
	VMOVDQU32.Z (SI), K1, Z0
	VMOVDQU32.Z 64(SI), K3, Z1
	VPSUBD Z20, Z0, Z0
	VPSUBD Z21, Z1, Z1
	VCVTDQ2PS Z0, Z0
	VCVTDQ2PS Z1, Z1
	VMULPS Z22, Z0, Z0
	VMULPS Z23, Z1, Z1
	TESTQ $1, BX
	JZ rtnobias
	VADDPS Z24, Z0, Z0
	VADDPS Z25, Z1, Z1
rtnobias:
	TESTQ $8, BX
	JZ rtnores
	VMOVUPS.Z (R14), K1, Z2
	VMOVUPS.Z 64(R14), K3, Z3
	VADDPS Z2, Z0, Z0
	VADDPS Z3, Z1, Z1
	ADDQ R12, R14
rtnores:
	TESTQ $2, BX
	JZ rtnorelu
	VMAXPS Z30, Z0, Z0
	VMAXPS Z30, Z1, Z1
rtnorelu:
	TESTQ $4, BX
	JNZ rtu8
	VMOVUPS Z0, K1, (DI)
	VMOVUPS Z1, K3, 64(DI)
	JMP rtnext
rtu8:
	QUANTIZE(Z0, K2)
	QUANTIZE(Z1, K4)
	VPMOVDB Z0, K1, (DI)
	VPMOVDB Z1, K3, 16(DI)
rtnext:
	ADDQ R11, SI
	ADDQ R12, DI
	DECQ R13
	JG rtrow
	VZEROUPPER
	RET

// func quantizeU8AVX512(n int, src *float32, inv float32, z int32, out *uint8)
//
// Requires AVX-512F. QuantizeU8 for n values, 16 at a time (the last
// group masked with K1), with the steps of requantU8AVX512 after its
// ReLU: × inv, NaN → 0, clamped to ±512, rounded to the nearest even
// integer, + z, clamped to 0…255, stored as bytes.
TEXT ·quantizeU8AVX512(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ out+24(FP), DI
	TESTQ CX, CX
	JLE qdone
	VBROADCASTSS inv+16(FP), Z28
	MOVL z+20(FP), AX
	VPBROADCASTD AX, Z29
	QUANT_CONSTS
qloop:
	MOVL $0xffff, AX
	CMPQ CX, $16
	JGE qmask
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
qmask:
	KMOVW AX, K1
	VMOVUPS.Z (SI), K1, Z0
	QUANTIZE(Z0, K2)
	VPMOVDB Z0, K1, (DI)
	ADDQ $64, SI
	ADDQ $16, DI
	SUBQ $16, CX
	JG qloop
	VZEROUPPER
qdone:
	RET
