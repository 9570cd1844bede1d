package kernels

import (
	"fmt"

	"github.com/fashion-classifier/fashion/internal/parallel"
)

// Conv3x3Direct computes a 3×3, stride-1, padding-1 convolution (no groups
// or dilation) directly, for inputs with few channels, where im2col
// unfolds 9·C values per pixel into a product too thin (K = 9·C) to run
// well and Winograd has too few channels to transform: the first layer of
// an image network (C = 1 or 3). Every output pixel accumulates its 9·C
// taps into M outputs held in registers, 32 channels at a time, and the
// bias and ReLU of ep are applied before the single store (other
// activations in a second pass). Data is NHWC (src n×h×w×c, dst n×h×w×m)
// and wt is the im2col right-hand side [3·3·c, m], rows ordered kernel
// row, kernel column, input channel. Rows of images are split between
// parallel.Workers() goroutines; s provides the padded rows (nil
// allocates).
//
// It needs m to be a multiple of 32 (DirectSupported).
func Conv3x3Direct(dst, src []float32, n, h, w, c, m int, wt []float32, ep *Epilogue, s *Scratch) {
	if !DirectSupported(m) {
		// 16 → 16 is Conv3x3Direct16's (its assembly is AVX-512, not AVX2).
		panic(fmt.Sprintf("kernels.Conv3x3Direct: %d output channels (a multiple of 32 is needed)", m))
	}
	conv3x3Direct(dst, src, nil, n, h, w, c, m, wt, ep, s, parallel.Workers(), winoAsm)
}

// DirectSupported reports whether Conv3x3Direct takes m output channels.
func DirectSupported(m int) bool { return m > 0 && m%32 == 0 }

// Conv3x3Direct16 is Conv3x3Direct for 16 channels in and 16 out, with
// res (laid out as dst, or nil) added before the activation: the
// convolutions of ResNet's first stage, with a residual block's sum and
// ReLU fused. With AVX-512 (Direct16Fast) a pixel's 16 outputs are one
// register and 14 pixels share each weight load; Winograd, whose
// transforms dominate at 16 channels, was 2× slower there (ResNet-20 at
// batch 32 on the AVX-512 Xeon, cmd/layertime -infer).
func Conv3x3Direct16(dst, src, res []float32, n, h, w int, wt []float32, ep *Epilogue, s *Scratch) {
	conv3x3Direct(dst, src, res, n, h, w, 16, 16, wt, ep, s, parallel.Workers(), direct16Asm)
}

// Direct16Fast reports whether Conv3x3Direct16 runs its AVX-512 kernel on
// this CPU (otherwise Winograd is the faster choice).
func Direct16Fast() bool { return direct16Asm }

// directRows is how many output rows one task computes.
const directRows = 4

// conv3x3Direct is Conv3x3Direct and Conv3x3Direct16 (c = m = 16, where
// res may be set and asm selects the AVX-512 kernel), with the number of
// workers and the assembly choice given, for tests.
func conv3x3Direct(dst, src, res []float32, n, h, w, c, m int, wt []float32, ep *Epilogue, s *Scratch, workers int, asm bool) {
	k16 := c == 16 && m == 16
	if !(DirectSupported(m) || k16) || (res != nil && !k16) || c < 1 || h < 1 || w < 1 || n < 0 || len(wt) != 9*c*m ||
		len(src) < n*h*w*c || len(dst) < n*h*w*m || (res != nil && len(res) < n*h*w*m) {
		panic(fmt.Sprintf("kernels.Conv3x3Direct: %d→%d values (%d residual), %d weights for %d images of %d×%d×%d→%d", len(src), len(dst), len(res), len(wt), n, h, w, c, m))
	}
	if res != nil && ep != nil && ep.Act.Kind != ActNone && ep.Act.Kind != ActReLU {
		panic(fmt.Sprintf("kernels.Conv3x3Direct16: activation %v cannot follow the fused sum", ep.Act))
	}
	var bias []float32
	relu := false
	if ep != nil {
		bias, relu = ep.Bias, ep.Act.Kind == ActReLU
	}
	if bias == nil {
		bias = s.Floats(0, slotD, m)
		clear(bias)
	}
	bias = bias[:m]
	if s != nil {
		s.Reserve(workers)
	}
	blocks := (h + directRows - 1) / directRows
	job := directJob{dst: dst, src: src, res: res, wt: wt, bias: bias, relu: relu, asm: asm, k16: k16, s: s, h: h, w: w, c: c, m: m, blocks: blocks}
	if tasks := n * blocks; workers <= 1 || tasks == 1 {
		for t := range tasks {
			job.task(0, t)
		}
	} else {
		shared := job // only this copy escapes to the goroutines
		parallel.Run(workers, tasks, shared.task)
	}
	if ep != nil && ep.Act.Kind != ActNone && ep.Act.Kind != ActReLU {
		ApplyActParallel(dst[:n*h*w*m], dst[:n*h*w*m], ep.Act)
	}
}

// directJob is one Conv3x3Direct call, shared by its tasks.
type directJob struct {
	dst, src, res, wt, bias []float32
	relu, asm, k16          bool
	s                       *Scratch
	h, w, c, m, blocks      int
}

// task computes output rows [y0, y0+directRows) of one image from a
// zero-padded copy of the input rows they need.
func (j *directJob) task(wk, t int) {
	h, w, c, m := j.h, j.w, j.c, j.m
	img, y0 := t/j.blocks, t%j.blocks*directRows
	rows := min(directRows, h-y0)
	prs := (w + 2) * c // padded row stride
	pad := j.s.Floats(wk, slotA, (rows+2)*prs)
	clear(pad)
	for r := range rows + 2 {
		if y := y0 - 1 + r; y >= 0 && y < h {
			copy(pad[r*prs+c:r*prs+c+w*c], j.src[(img*h+y)*w*c:])
		}
	}
	for r := range rows {
		o := (img*h + y0 + r) * w * m
		out := j.dst[o : o+w*m]
		var res []float32
		if j.res != nil {
			res = j.res[o : o+w*m]
		}
		in := pad[r*prs : (r+3)*prs]
		switch {
		case j.asm && j.k16:
			_, _ = in[2*prs+(w-1)*c+3*c-1], j.wt[9*16*16-1]
			flags, rp := 0, &out[0] // rp is not read without flag 2
			if j.relu {
				flags |= 1
			}
			if res != nil {
				flags, rp = flags|2, &res[0]
			}
			conv3x3Row16AVX512(&in[0], 4*prs, &j.wt[0], &j.bias[0], rp, flags, &out[0], w)
		case j.asm:
			_ = in[2*prs+(w-1)*c+3*c-1]
			conv3x3RowAVX2(&in[0], prs, 3*c, &j.wt[0], m, &j.bias[0], j.relu, &out[0], w, c)
		default:
			conv3x3RowGo(in, prs, c, j.wt, m, j.bias, res, j.relu, out, w)
		}
	}
}

// conv3x3RowGo computes one output row of w pixels from the three padded
// input rows in (stride prs), as conv3x3RowAVX2 and conv3x3Row16AVX512
// do, adding res (laid out as out, or nil) before the ReLU.
func conv3x3RowGo(in []float32, prs, c int, wt []float32, m int, bias, res []float32, relu bool, out []float32, w int) {
	for x := range w {
		o := out[x*m : (x+1)*m]
		copy(o, bias)
		for ky := range 3 {
			row := in[ky*prs+x*c : ky*prs+x*c+3*c]
			for jj, v := range row {
				wr := wt[(ky*3*c+jj)*m : (ky*3*c+jj+1)*m]
				for k := range o {
					o[k] += v * wr[k]
				}
			}
		}
		if res != nil {
			for k, v := range res[x*m : (x+1)*m] {
				o[k] += v
			}
		}
		if relu {
			for k, v := range o {
				o[k] = max(v, 0)
			}
		}
	}
}
