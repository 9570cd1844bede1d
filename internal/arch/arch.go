package arch

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/fashion-classifier/fashion/internal/nn"
)

// Arch is a named network design. Build returns a freshly initialised
// network for the given number of classes; its parameter names are stable,
// so weights saved from one build load into another.
type Arch struct {
	Name    string
	Summary string
	Build   func(rng *rand.Rand, classes int) *nn.Sequential
}

// Archs lists the architectures `fashion train -arch` accepts.
func Archs() map[string]Arch {
	return map[string]Arch{
		"vgg": {"vgg", "VGG-style CNN with batch norm, width 32 (≈437k parameters, ≈44 MFLOP/image); the default",
			func(rng *rand.Rand, classes int) *nn.Sequential { return VGG(rng, 32, classes) }},
		"vgg64": {"vgg64", "the same VGG-style CNN at width 64 (≈1.15M parameters)",
			func(rng *rand.Rand, classes int) *nn.Sequential { return VGG(rng, 64, classes) }},
		"mobilenetv3-small": {"mobilenetv3-small", "MobileNetV3-small (Howard et al. 2019), the replaced report's architecture, on 1-channel 28×28 input",
			MobileNetV3Small},
	}
}

// LookupArch returns the architecture called name, or an error listing the
// known ones.
func LookupArch(name string) (Arch, error) {
	all := Archs()
	if a, ok := all[name]; ok {
		return a, nil
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	return Arch{}, fmt.Errorf("unknown architecture %q (known: %s)", name, strings.Join(names, ", "))
}

// VGG builds the default network: 3×3 convolutions with batch norm and
// ReLU in three stages of width w, 2w, 4w with 2×2 max pooling, then a
// two-layer classifier with dropout:
//
//	conv(1→w) conv(w→w) pool conv(w→2w) conv(2w→2w) pool conv(2w→4w) pool
//	dropout(0.3) linear(4w·3·3→256) relu dropout(0.3) linear(256→classes)
func VGG(rng *rand.Rand, w, classes int) *nn.Sequential {
	s := &nn.Sequential{}
	conv := func(i, in, out int) {
		c := nn.NewConv2D(rng, in, out, 3, 1, 1, false)
		c.NoInputGrad = i == 1 // nothing needs the gradient of the image
		s.Add(fmt.Sprintf("conv%d", i), c)
		bn := nn.NewBatchNorm(out)
		bn.ReLU = true
		s.Add(fmt.Sprintf("bn%d", i), bn)
	}
	conv(1, 1, w)
	conv(2, w, w)
	s.Add("pool1", nn.NewMaxPool(2, 2))
	conv(3, w, 2*w)
	conv(4, 2*w, 2*w)
	s.Add("pool2", nn.NewMaxPool(2, 2))
	conv(5, 2*w, 4*w)
	s.Add("pool3", nn.NewMaxPool(2, 2))
	s.Add("flatten", &nn.Flatten{})
	s.Add("drop1", nn.NewDropout(rng, 0.3))
	s.Add("fc1", nn.NewLinear(rng, 4*w*3*3, 256))
	s.Add("relu6", nn.NewActivation(nn.ReLU))
	s.Add("drop2", nn.NewDropout(rng, 0.3))
	s.Add("fc2", nn.NewLinear(rng, 256, classes))
	return s
}

// MobileNetV3Small builds torchvision's mobilenet_v3_small layout (stem,
// eleven inverted-residual blocks with squeeze-excite and hard-swish, a
// 1×1 conv to 576 channels, pooling and a 1024-wide classifier) for one
// input channel. On 28×28 input the five stride-2 stages leave a 1×1 map.
func MobileNetV3Small(rng *rand.Rand, classes int) *nn.Sequential {
	type block struct {
		k, exp, out int
		se          bool
		act         nn.ActKind
		stride      int
	}
	blocks := []block{
		{3, 16, 16, true, nn.ReLU, 2},
		{3, 72, 24, false, nn.ReLU, 2},
		{3, 88, 24, false, nn.ReLU, 1},
		{5, 96, 40, true, nn.HardSwish, 2},
		{5, 240, 40, true, nn.HardSwish, 1},
		{5, 240, 40, true, nn.HardSwish, 1},
		{5, 120, 48, true, nn.HardSwish, 1},
		{5, 144, 48, true, nn.HardSwish, 1},
		{5, 288, 96, true, nn.HardSwish, 2},
		{5, 576, 96, true, nn.HardSwish, 1},
		{5, 576, 96, true, nn.HardSwish, 1},
	}
	s := &nn.Sequential{}
	stem := nn.NewConv2D(rng, 1, 16, 3, 2, 1, false)
	stem.NoInputGrad = true
	s.Add("stem.conv", stem)
	s.Add("stem.bn", nn.NewBatchNorm(16))
	s.Add("stem.act", nn.NewActivation(nn.HardSwish))
	in := 16
	for i, b := range blocks {
		body := &nn.Sequential{}
		if b.exp != in {
			body.Add("expand.conv", nn.NewConv2D(rng, in, b.exp, 1, 1, 0, false))
			body.Add("expand.bn", nn.NewBatchNorm(b.exp))
			body.Add("expand.act", nn.NewActivation(b.act))
		}
		body.Add("dw.conv", nn.NewDepthwiseConv(rng, b.exp, b.k, b.stride, (b.k-1)/2))
		body.Add("dw.bn", nn.NewBatchNorm(b.exp))
		body.Add("dw.act", nn.NewActivation(b.act))
		if b.se {
			body.Add("se", nn.NewSqueezeExcite(rng, b.exp, makeDivisible(b.exp/4, 8)))
		}
		body.Add("project.conv", nn.NewConv2D(rng, b.exp, b.out, 1, 1, 0, false))
		body.Add("project.bn", nn.NewBatchNorm(b.out))
		name := fmt.Sprintf("block%d", i+1)
		if b.stride == 1 && in == b.out {
			s.Add(name, nn.NewResidual(body))
		} else {
			s.Add(name, body)
		}
		in = b.out
	}
	s.Add("last.conv", nn.NewConv2D(rng, in, 576, 1, 1, 0, false))
	s.Add("last.bn", nn.NewBatchNorm(576))
	s.Add("last.act", nn.NewActivation(nn.HardSwish))
	s.Add("pool", &nn.GlobalAvgPool{})
	s.Add("fc1", nn.NewLinear(rng, 576, 1024))
	s.Add("fc1.act", nn.NewActivation(nn.HardSwish))
	s.Add("drop", nn.NewDropout(rng, 0.2))
	s.Add("fc2", nn.NewLinear(rng, 1024, classes))
	return s
}

// makeDivisible rounds v to the nearest multiple of d, never going below
// 90% of v, as MobileNet's channel counts do.
func makeDivisible(v, d int) int {
	n := max(d, (v+d/2)/d*d)
	if float64(n) < 0.9*float64(v) {
		n += d
	}
	return n
}
