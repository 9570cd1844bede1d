package kernels

import "golang.org/x/sys/cpu"

// winoAsm reports that the AVX2 Winograd transforms of winograd_amd64.s
// run on this CPU.
var winoAsm = vecAVX2

// winoInputAVX2 is winoInputGo for c a multiple of 8, on raw pointers; the
// caller checks the lengths.
//
//go:noescape
func winoInputAVX2(p *float32, rs, ps, c int, out *float32, ds int)

// winoOutputAVX2 is winoOutputGo for m a multiple of 8, on raw pointers;
// the caller checks the lengths.
//
//go:noescape
func winoOutputAVX2(src *float32, ss, m int, bias *float32, relu bool, d0, d1, d2, d3 *float32)

// wino4InputAVX2 is wino4InputGo for 8·chunks channels
// (winograd4_amd64.s); tmp holds 36×8 floats.
//
//go:noescape
func wino4InputAVX2(p *float32, rs, ps int, out *float32, ds int, tmp *float32, chunks int)

// wino4OutputAVX2 is wino4OutputGo for channels [off, off+8·chunks)
// (winograd4_amd64.s), bias pointing at channel off; tmp holds 24×8
// floats.
//
//go:noescape
func wino4OutputAVX2(src *float32, ss int, bias *float32, relu bool, d *[16]*float32, off int, tmp *float32, chunks int)

// wino4GradOutputAVX2 is wino4GradOutputGo for channels [off,
// off+8·chunks) (winograd4_amd64.s), out pointing at channel off; tmp
// holds 24×8 floats.
//
//go:noescape
func wino4GradOutputAVX2(d *[16]*float32, off int, out *float32, ds int, tmp *float32, chunks int)

// max4AVX2 is max4Go for n a positive multiple of 8, on raw pointers; the
// caller checks the lengths.
//
//go:noescape
func max4AVX2(dst, a, b, c, d *float32, n int)

// conv3x3RowAVX2 is conv3x3RowGo on raw pointers (direct3x3_amd64.s),
// with c3 = 3c; the caller checks the lengths.
//
//go:noescape
func conv3x3RowAVX2(in *float32, prs, c3 int, wt *float32, m int, bias *float32, relu bool, out *float32, w, c int)

// direct16Asm reports that conv3x3Row16AVX512 runs on this CPU.
var direct16Asm = cpu.X86.HasAVX512F

// conv3x3Row16AVX512 is conv3x3RowGo for c = m = 16 on raw pointers
// (direct3x3_amd64.s), prs in bytes, flags 1 for ReLU and 2 for res; the
// caller checks the lengths.
//
//go:noescape
func conv3x3Row16AVX512(in *float32, prs int, wt, bias, res *float32, flags int, out *float32, w int)
