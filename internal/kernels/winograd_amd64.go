package kernels

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
