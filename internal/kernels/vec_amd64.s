#include "textflag.h"

// Batch-norm kernels over rows of c float32 values (c a multiple of 8),
// AVX2 + FMA. See vec.go for the pure-Go definitions they must match.

// func channelSumsAVX2(x *float32, rows, c int, s1, s2 *float32)
// s1[j] += Σ_r x[r][j]; s2[j] += Σ_r x[r][j]². Walks 8 channels at a time
// down the rows, two rows per iteration into separate accumulators.
TEXT ·channelSumsAVX2(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ rows+8(FP), CX
	MOVQ c+16(FP), R10
	MOVQ s1+24(FP), R8
	MOVQ s2+32(FP), R9
	SHLQ $2, R10            // row stride in bytes
	XORQ BX, BX             // byte offset of the channel group

sums_group:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	LEAQ   (SI)(BX*1), DI
	MOVQ   CX, R11

sums_pair:
	CMPQ        R11, $2
	JLT         sums_tail
	VMOVUPS     (DI), Y4
	VMOVUPS     (DI)(R10*1), Y5
	VADDPS      Y4, Y0, Y0
	VFMADD231PS Y4, Y4, Y1
	VADDPS      Y5, Y2, Y2
	VFMADD231PS Y5, Y5, Y3
	LEAQ        (DI)(R10*2), DI
	SUBQ        $2, R11
	JMP         sums_pair

sums_tail:
	TESTQ       R11, R11
	JZ          sums_store
	VMOVUPS     (DI), Y4
	VADDPS      Y4, Y0, Y0
	VFMADD231PS Y4, Y4, Y1

sums_store:
	VADDPS  Y2, Y0, Y0
	VADDPS  Y3, Y1, Y1
	VADDPS  (R8)(BX*1), Y0, Y0
	VMOVUPS Y0, (R8)(BX*1)
	VADDPS  (R9)(BX*1), Y1, Y1
	VMOVUPS Y1, (R9)(BX*1)
	ADDQ    $32, BX
	CMPQ    BX, R10
	JLT     sums_group
	VZEROUPPER
	RET

// func affineAVX2(dst, src *float32, rows, c int, scale, shift *float32, relu bool)
// dst[r][j] = src[r][j]·scale[j] + shift[j], then max(·, 0) if relu.
TEXT ·affineAVX2(SB), NOSPLIT, $0-49
	MOVQ    dst+0(FP), DI
	MOVQ    src+8(FP), SI
	MOVQ    rows+16(FP), CX
	MOVQ    c+24(FP), R10
	MOVQ    scale+32(FP), R8
	MOVQ    shift+40(FP), R9
	MOVBQZX relu+48(FP), R12
	SHLQ    $2, R10
	VXORPS  Y7, Y7, Y7
	TESTQ   CX, CX
	JZ      affine_done

affine_row:
	XORQ BX, BX

affine_group:
	VMOVUPS     (SI)(BX*1), Y0
	VMOVUPS     (R9)(BX*1), Y1
	VFMADD231PS (R8)(BX*1), Y0, Y1
	TESTQ       R12, R12
	JZ          affine_store
	VMAXPS      Y7, Y1, Y1

affine_store:
	VMOVUPS Y1, (DI)(BX*1)
	ADDQ    $32, BX
	CMPQ    BX, R10
	JLT     affine_group
	ADDQ    R10, SI
	ADDQ    R10, DI
	DECQ    CX
	JNZ     affine_row

affine_done:
	VZEROUPPER
	RET

// func addAVX2(dst, a, b *float32, n int, relu bool)
// dst[i] = a[i] + b[i], then max(·, 0) if relu; n is a multiple of 8.
TEXT ·addAVX2(SB), NOSPLIT, $0-33
	MOVQ    dst+0(FP), DI
	MOVQ    a+8(FP), SI
	MOVQ    b+16(FP), DX
	MOVQ    n+24(FP), CX
	MOVBQZX relu+32(FP), R12
	SHLQ    $2, CX
	XORQ    BX, BX
	VXORPS  Y7, Y7, Y7
	TESTQ   CX, CX
	JZ      add_done

add_group:
	VMOVUPS (SI)(BX*1), Y0
	VADDPS  (DX)(BX*1), Y0, Y0
	TESTQ   R12, R12
	JZ      add_store
	VMAXPS  Y7, Y0, Y0

add_store:
	VMOVUPS Y0, (DI)(BX*1)
	ADDQ    $32, BX
	CMPQ    BX, CX
	JLT     add_group

add_done:
	VZEROUPPER
	RET

// func gradSumsAVX2(dy, x *float32, rows, c int, scale, shift, sd, sdx *float32)
// With g = dy masked by x·scale + shift > 0 (the fused ReLU's output, with
// the FMA of affineAVX2; no mask when scale is nil):
// sd[j] += Σ_r g[r][j]; sdx[j] += Σ_r g[r][j]·x[r][j].
TEXT ·gradSumsAVX2(SB), NOSPLIT, $0-64
	MOVQ   dy+0(FP), SI
	MOVQ   x+8(FP), R14
	MOVQ   rows+16(FP), CX
	MOVQ   c+24(FP), R10
	MOVQ   scale+32(FP), R13
	MOVQ   shift+40(FP), R12
	MOVQ   sd+48(FP), R8
	MOVQ   sdx+56(FP), R9
	SHLQ   $2, R10
	XORQ   BX, BX
	VXORPS Y7, Y7, Y7

gsums_group:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	MOVQ   BX, DI           // byte offset of this row's group, same in both arrays
	MOVQ   CX, R11
	TESTQ  R13, R13
	JZ     gsums_row
	VMOVUPS (R13)(BX*1), Y2 // scale
	VMOVUPS (R12)(BX*1), Y3 // shift

gsums_row:
	VMOVUPS (SI)(DI*1), Y4
	VMOVUPS (R14)(DI*1), Y5
	TESTQ   R13, R13
	JZ      gsums_nomask
	VMOVAPS     Y3, Y6
	VFMADD231PS Y2, Y5, Y6  // y = x·scale + shift
	VCMPPS      $1, Y6, Y7, Y6  // 0 < y
	VANDPS      Y6, Y4, Y4

gsums_nomask:
	VADDPS      Y4, Y0, Y0
	VFMADD231PS Y5, Y4, Y1
	ADDQ        R10, DI
	DECQ        R11
	JNZ         gsums_row
	VADDPS      (R8)(BX*1), Y0, Y0
	VMOVUPS     Y0, (R8)(BX*1)
	VADDPS      (R9)(BX*1), Y1, Y1
	VMOVUPS     Y1, (R9)(BX*1)
	ADDQ        $32, BX
	CMPQ        BX, R10
	JLT         gsums_group
	VZEROUPPER
	RET

// func gradApplyAVX2(dx, dy, x *float32, rows, c int, scale, shift, ka, kb, kc *float32)
// dx[r][j] = ka[j]·g[r][j] + kb[j]·x[r][j] + kc[j], g as in gradSumsAVX2.
TEXT ·gradApplyAVX2(SB), NOSPLIT, $0-80
	MOVQ   dx+0(FP), DI
	MOVQ   dy+8(FP), SI
	MOVQ   x+16(FP), R14
	MOVQ   rows+24(FP), CX
	MOVQ   c+32(FP), R10
	MOVQ   scale+40(FP), R13
	MOVQ   shift+48(FP), R11
	MOVQ   ka+56(FP), R8
	MOVQ   kb+64(FP), R9
	MOVQ   kc+72(FP), R12
	SHLQ   $2, R10
	VXORPS Y7, Y7, Y7
	XORQ   AX, AX           // byte offset of the current row
	TESTQ  CX, CX
	JZ     gapply_done

gapply_row:
	XORQ BX, BX

gapply_group:
	LEAQ    (AX)(BX*1), DX
	VMOVUPS (SI)(DX*1), Y4
	VMOVUPS (R14)(DX*1), Y1
	TESTQ   R13, R13
	JZ      gapply_nomask
	VMOVUPS     (R11)(BX*1), Y6
	VFMADD231PS (R13)(BX*1), Y1, Y6  // y = x·scale + shift
	VCMPPS      $1, Y6, Y7, Y6
	VANDPS      Y6, Y4, Y4

gapply_nomask:
	VMOVUPS     (R12)(BX*1), Y0        // kc
	VFMADD231PS (R8)(BX*1), Y4, Y0     // + ka·g
	VFMADD231PS (R9)(BX*1), Y1, Y0     // + kb·x
	VMOVUPS     Y0, (DI)(DX*1)
	ADDQ        $32, BX
	CMPQ        BX, R10
	JLT         gapply_group
	ADDQ        R10, AX
	DECQ        CX
	JNZ         gapply_row

gapply_done:
	VZEROUPPER
	RET

// func pool2x2RowAVX2(dst *float32, arg *int32, top, bot *float32, ow, c, topIdx, botIdx int)
// One output row of a 2×2/2 max pool, 8 channels at a time; see
// pool2x2RowGo. Indices ride along as int32 lanes, blended with the same
// masks as the values (strictly greater wins, so ties keep the earlier).
TEXT ·pool2x2RowAVX2(SB), NOSPLIT, $0-64
	MOVQ dst+0(FP), DI
	MOVQ arg+8(FP), R13
	MOVQ top+16(FP), SI
	MOVQ bot+24(FP), R14
	MOVQ ow+32(FP), CX
	MOVQ c+40(FP), R10
	MOVQ topIdx+48(FP), R8
	MOVQ botIdx+56(FP), R9
	SHLQ $2, R10                 // c in bytes
	// Y15 = lane numbers 0..7 as int32.
	MOVQ         $0x0000000100000000, AX
	VMOVQ        AX, X15
	MOVQ         $0x0000000300000002, AX
	VPINSRQ      $1, AX, X15, X15
	MOVQ         $0x0000000500000004, AX
	VMOVQ        AX, X14
	MOVQ         $0x0000000700000006, AX
	VPINSRQ      $1, AX, X14, X14
	VINSERTI128  $1, X14, Y15, Y15
	XORQ         DX, DX          // element offset (floats) of the left pixel, 2·ox·c + j

pool_pixel:
	XORQ BX, BX                  // j in bytes

pool_group:
	MOVQ    DX, R11
	SHLQ    $2, R11
	ADDQ    BX, R11              // byte offset of the top-left value
	LEAQ    (R11)(R10*1), R12    // byte offset of the top-right value
	VMOVUPS (SI)(R11*1), Y0      // best value so far
	VMOVUPS (SI)(R12*1), Y1
	VMOVUPS (R14)(R11*1), Y2
	VMOVUPS (R14)(R12*1), Y3
	TESTQ   R13, R13
	JNZ     pool_arg
	VMAXPS  Y1, Y0, Y0
	VMAXPS  Y2, Y0, Y0
	VMAXPS  Y3, Y0, Y0
	JMP     pool_store

pool_arg:
	// Index vectors: base + (element offset) + lane.
	MOVQ         R11, AX
	SHRQ         $2, AX          // element offset of top-left
	LEAQ         (R8)(AX*1), AX
	VMOVQ        AX, X4
	VPBROADCASTD X4, Y4
	VPADDD       Y15, Y4, Y4     // top-left indices (best so far)
	MOVQ         R10, AX
	SHRQ         $2, AX
	VMOVQ        AX, X5
	VPBROADCASTD X5, Y5          // c as int32 lanes
	VPADDD       Y5, Y4, Y6      // top-right indices
	MOVQ         R9, AX
	SUBQ         R8, AX
	VMOVQ        AX, X7
	VPBROADCASTD X7, Y7          // botIdx − topIdx
	VPADDD       Y7, Y4, Y8      // bottom-left indices
	VPADDD       Y7, Y6, Y9      // bottom-right indices

	VCMPPS    $1, Y1, Y0, Y10    // best < top-right
	VBLENDVPS Y10, Y1, Y0, Y0
	VBLENDVPS Y10, Y6, Y4, Y4
	VCMPPS    $1, Y2, Y0, Y10    // best < bottom-left
	VBLENDVPS Y10, Y2, Y0, Y0
	VBLENDVPS Y10, Y8, Y4, Y4
	VCMPPS    $1, Y3, Y0, Y10    // best < bottom-right
	VBLENDVPS Y10, Y3, Y0, Y0
	VBLENDVPS Y10, Y9, Y4, Y4

	// Output element offset = (element offset of top-left)/2 rounded to
	// the pixel: ox·c + j = DX/2 + j.
	MOVQ    DX, AX
	SHRQ    $1, AX
	SHLQ    $2, AX
	ADDQ    BX, AX
	VMOVUPS Y4, (R13)(AX*1)

pool_store:
	MOVQ    DX, AX
	SHRQ    $1, AX
	SHLQ    $2, AX
	ADDQ    BX, AX
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ    $32, BX
	CMPQ    BX, R10
	JLT     pool_group
	MOVQ    R10, AX
	SHRQ    $2, AX               // c elements; the next window is 2c further
	LEAQ    (DX)(AX*2), DX
	DECQ    CX
	JNZ     pool_pixel
	VZEROUPPER
	RET

// func mulAddAVX2(dst, a, b *float32, n int)
// dst[i] += a[i]·b[i] (one FMA rounding); n is a multiple of 8.
TEXT ·mulAddAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	SHLQ $2, CX
	XORQ BX, BX
	TESTQ CX, CX
	JZ   muladd_done

muladd_group:
	VMOVUPS     (SI)(BX*1), Y0
	VMOVUPS     (DI)(BX*1), Y1
	VFMADD231PS (DX)(BX*1), Y0, Y1
	VMOVUPS     Y1, (DI)(BX*1)
	ADDQ        $32, BX
	CMPQ        BX, CX
	JLT         muladd_group

muladd_done:
	VZEROUPPER
	RET

// func hardSwishAVX2(dst, src *float32, n int)
// dst[i] = x·min(max(x·(1/6) + 1/2, 0), 1), with x = src[i], rounded as
// the Go expression (a multiply, then an add: no FMA); n is a multiple
// of 8.
TEXT ·hardSwishAVX2(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	SHLQ         $2, CX
	XORQ         BX, BX
	MOVL         $0x3e2aaaab, AX // float32(1.0/6)
	MOVL         AX, X8
	VBROADCASTSS X8, Y8
	MOVL         $0x3f000000, AX // 0.5
	MOVL         AX, X9
	VBROADCASTSS X9, Y9
	MOVL         $0x3f800000, AX // 1
	MOVL         AX, X10
	VBROADCASTSS X10, Y10
	VXORPS       Y11, Y11, Y11
	TESTQ        CX, CX
	JZ           hswish_done

hswish_group:
	VMOVUPS (SI)(BX*1), Y0
	VMULPS  Y8, Y0, Y1
	VADDPS  Y9, Y1, Y1
	VMINPS  Y10, Y1, Y1
	VMAXPS  Y11, Y1, Y1
	VMULPS  Y1, Y0, Y0
	VMOVUPS Y0, (DI)(BX*1)
	ADDQ    $32, BX
	CMPQ    BX, CX
	JLT     hswish_group

hswish_done:
	VZEROUPPER
	RET

// func hardSwishGradAVX2(dx, dy, x *float32, n int)
// dx[i] = 0 where x ≤ −3, dy where x ≥ 3, else dy·(2x+3)/6, rounded as
// the Go expression; n is a multiple of 8.
TEXT ·hardSwishGradAVX2(SB), NOSPLIT, $0-32
	MOVQ         dx+0(FP), DI
	MOVQ         dy+8(FP), SI
	MOVQ         x+16(FP), DX
	MOVQ         n+24(FP), CX
	SHLQ         $2, CX
	XORQ         BX, BX
	MOVL         $0x40400000, AX // 3
	MOVL         AX, X8
	VBROADCASTSS X8, Y8
	MOVL         $0xc0400000, AX // −3
	MOVL         AX, X9
	VBROADCASTSS X9, Y9
	MOVL         $0x40c00000, AX // 6
	MOVL         AX, X10
	VBROADCASTSS X10, Y10
	TESTQ        CX, CX
	JZ           hswishgrad_done

hswishgrad_group:
	VMOVUPS   (DX)(BX*1), Y0 // x
	VMOVUPS   (SI)(BX*1), Y1 // dy
	VADDPS    Y0, Y0, Y2     // 2x
	VADDPS    Y8, Y2, Y2     // 2x + 3
	VMULPS    Y2, Y1, Y2     // dy·(2x+3)
	VDIVPS    Y10, Y2, Y2    // ÷ 6
	VCMPPS    $6, Y9, Y0, Y3 // x > −3, or NaN (not x ≤ −3)
	VANDPS    Y3, Y2, Y2
	VCMPPS    $13, Y8, Y0, Y4 // x ≥ 3
	VBLENDVPS Y4, Y1, Y2, Y2
	VMOVUPS   Y2, (DI)(BX*1)
	ADDQ      $32, BX
	CMPQ      BX, CX
	JLT       hswishgrad_group

hswishgrad_done:
	VZEROUPPER
	RET

// func reluGradAVX2(dx, dy, x *float32, n int)
// dx[i] = dy[i] where x[i] > 0, else 0; n is a multiple of 8.
TEXT ·reluGradAVX2(SB), NOSPLIT, $0-32
	MOVQ   dx+0(FP), DI
	MOVQ   dy+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   n+24(FP), CX
	SHLQ   $2, CX
	XORQ   BX, BX
	VXORPS Y7, Y7, Y7
	TESTQ  CX, CX
	JZ     relugrad_done

relugrad_group:
	VMOVUPS (DX)(BX*1), Y0
	VCMPPS  $14, Y7, Y0, Y0 // x > 0
	VANDPS  (SI)(BX*1), Y0, Y0
	VMOVUPS Y0, (DI)(BX*1)
	ADDQ    $32, BX
	CMPQ    BX, CX
	JLT     relugrad_group

relugrad_done:
	VZEROUPPER
	RET

// func maxU8AVX2(dst, src *uint8, n int)
// dst[i] = max(dst[i], src[i]) for n a positive multiple of 32 (VPMAXUB).
TEXT ·maxU8AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
maxu8loop:
	VMOVDQU (DI), Y0
	VPMAXUB (SI), Y0, Y0
	VMOVDQU Y0, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	SUBQ $32, CX
	JNZ maxu8loop
	VZEROUPPER
	RET

// func copyRunsAVX2(dst, src *uint8, n, step, kh, rowStep, run int)
// copyRunsGo for run a positive multiple of 16: per pixel, kh runs copied
// 32 bytes at a time and a last 16 if run is an odd multiple of 16; dst
// advances by run after each.
TEXT ·copyRunsAVX2(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), R8
	MOVQ step+24(FP), R9
	MOVQ kh+32(FP), R10
	MOVQ rowStep+40(FP), R11
	MOVQ run+48(FP), R12
	MOVQ R12, R13
	ANDQ $-32, R13 // the bytes copied 32 at a time
runspixel:
	MOVQ SI, DX  // this pixel's first run
	MOVQ R10, BX // runs left
runsrow:
	XORQ AX, AX
	TESTQ R13, R13
	JZ runstail
runschunk:
	VMOVDQU (DX)(AX*1), Y0
	VMOVDQU Y0, (DI)(AX*1)
	ADDQ $32, AX
	CMPQ AX, R13
	JLT runschunk
runstail:
	CMPQ AX, R12
	JGE runsnext
	VMOVDQU (DX)(AX*1), X0
	VMOVDQU X0, (DI)(AX*1)
runsnext:
	ADDQ R12, DI
	ADDQ R11, DX
	DECQ BX
	JNZ runsrow
	ADDQ R9, SI
	DECQ R8
	JNZ runspixel
	VZEROUPPER
	RET

// func maxPool2x2U8AVX2(out, top, bottom *uint8, ow, c int)
// maxPool2x2Go for c a positive multiple of 32 (VPMAXUB).
TEXT ·maxPool2x2U8AVX2(SB), NOSPLIT, $0-40
	MOVQ out+0(FP), DI
	MOVQ top+8(FP), SI
	MOVQ bottom+16(FP), DX
	MOVQ ow+24(FP), R8
	MOVQ c+32(FP), R9
mp8pixel:
	XORQ AX, AX
	LEAQ (SI)(R9*1), R10 // the window's right column, top row
	LEAQ (DX)(R9*1), R11 // and bottom row
mp8chunk:
	VMOVDQU (SI)(AX*1), Y0
	VPMAXUB (R10)(AX*1), Y0, Y0
	VPMAXUB (DX)(AX*1), Y0, Y0
	VPMAXUB (R11)(AX*1), Y0, Y0
	VMOVDQU Y0, (DI)(AX*1)
	ADDQ $32, AX
	CMPQ AX, R9
	JLT mp8chunk
	ADDQ R9, DI
	LEAQ (SI)(R9*2), SI
	LEAQ (DX)(R9*2), DX
	DECQ R8
	JNZ mp8pixel
	VZEROUPPER
	RET
