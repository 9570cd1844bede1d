// Package onnx loads image classifiers saved in the ONNX format (as
// PyTorch's exporter writes them, opsets 13 to 18) and runs them on the
// engine's own kernels, and exports the engine's networks to ONNX.
//
// Loading compiles the graph once: weights and shape arithmetic are
// evaluated at load time (Shape, Gather, Concat, Reshape of constants),
// batch normalisation and per-channel affine maps are folded into the
// preceding convolution or matrix product, activations are fused into it,
// and what remains becomes a list of steps over NHWC buffers — the same
// layout, im2col and packed GEMM the engine trains with. ONNX flattens maps
// in C·H·W order and the engine stores them H·W·C; flattening is therefore
// free and the rows of the next layer's weights are permuted at load time
// instead.
//
// Anything the loader does not implement — an operator, an attribute
// value, an input layout — is reported at load time with the node's name
// and the model's opset, never guessed at.
package onnx
