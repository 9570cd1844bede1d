package arch

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
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
		"resnet20": {"resnet20", "ResNet-20 (He et al. 2016, CIFAR layout) at widths 16-32-64 on 28×28 input (272k parameters, ≈62 MFLOP/image)",
			func(rng *rand.Rand, classes int) *nn.Sequential { return ResNet(rng, 3, 16, classes) }},
		"resnet20x2": {"resnet20x2", "ResNet-20 at twice the width, 32-64-128 (1.08M parameters, ≈248 MFLOP/image)",
			func(rng *rand.Rand, classes int) *nn.Sequential { return ResNet(rng, 3, 32, classes) }},
		"mobilenetv3-small": {"mobilenetv3-small", "MobileNetV3-small (Howard et al. 2019), the replaced report's architecture, on 1-channel 28×28 input with the strides of 224×224 input",
			func(rng *rand.Rand, classes int) *nn.Sequential { return MobileNetV3Small(rng, classes, Strides224) }},
		"mobilenetv3-small-28": {"mobilenetv3-small-28", "MobileNetV3-small with strides adapted to 28×28 (maps 28, 14, 7 instead of 14 down to 1×1; ≈52 MFLOP/image instead of ≈4)",
			func(rng *rand.Rand, classes int) *nn.Sequential { return MobileNetV3Small(rng, classes, Strides28) }},
	}
}

// Names returns the architectures' names in order.
func Names() []string {
	names := slices.Collect(maps.Keys(Archs()))
	slices.Sort(names)
	return names
}

// LookupArch returns the architecture called name, or an error listing the
// known ones.
func LookupArch(name string) (Arch, error) {
	if a, ok := Archs()[name]; ok {
		return a, nil
	}
	return Arch{}, fmt.Errorf("unknown architecture %q (known: %s)", name, strings.Join(Names(), ", "))
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

// ResNet builds the CIFAR-style residual network of He et al. (2016,
// §4.2) for 28×28 input, depth 6n+2: a 3×3 convolution of width w, three
// stages of n basic blocks at widths w, 2w and 4w on 28×28, 14×14 and 7×7
// maps (the first block of the second and third stage has stride 2),
// global average pooling and a linear classifier. A basic block is
// conv3×3-BN-ReLU-conv3×3-BN added to its input, then ReLU; where the shape
// changes, the shortcut is a strided 1×1 convolution with batch norm
// (the paper's option B). ResNet-20 is n = 3, w = 16.
func ResNet(rng *rand.Rand, n, w, classes int) *nn.Sequential {
	s := &nn.Sequential{}
	stem := nn.NewConv2D(rng, 1, w, 3, 1, 1, false)
	stem.NoInputGrad = true
	s.Add("stem.conv", stem)
	bn := nn.NewBatchNorm(w)
	bn.ReLU = true
	s.Add("stem.bn", bn)
	in := w
	for stage, width := range []int{w, 2 * w, 4 * w} {
		for b := range n {
			stride := 1
			if stage > 0 && b == 0 {
				stride = 2
			}
			body := &nn.Sequential{}
			body.Add("conv1", nn.NewConv2D(rng, in, width, 3, stride, 1, false))
			bn1 := nn.NewBatchNorm(width)
			bn1.ReLU = true
			body.Add("bn1", bn1)
			body.Add("conv2", nn.NewConv2D(rng, width, width, 3, 1, 1, false))
			body.Add("bn2", nn.NewBatchNorm(width))
			name := fmt.Sprintf("layer%d.%d", stage+1, b)
			if stride == 1 && in == width {
				s.Add(name, nn.NewResidual(body))
			} else {
				short := &nn.Sequential{}
				short.Add("conv", nn.NewConv2D(rng, in, width, 1, stride, 0, false))
				short.Add("bn", nn.NewBatchNorm(width))
				s.Add(name, nn.NewProjection(body, short))
			}
			s.Add(name+".relu", nn.NewActivation(nn.ReLU))
			in = width
		}
	}
	s.Add("pool", &nn.GlobalAvgPool{})
	s.Add("fc", nn.NewLinear(rng, in, classes))
	return s
}

// Strides224 are MobileNetV3-small's strides (stem, then blocks 1–11) as
// designed for 224×224 input: five stride-2 layers, 224 → 7.
var Strides224 = [12]int{2, 2, 2, 1, 2, 1, 1, 1, 1, 2, 1, 1}

// Strides28 adapts MobileNetV3-small to 28×28 input. The network was
// designed to end on a 7×7 map (224/32); at 28×28 its five stride-2 layers
// leave 14, 7, 4, 2 and finally 1×1, so the last seven blocks, most of the
// capacity, see one pixel. Keeping an overall factor of 4 (28/7) restores
// the designed final map: the stem and block 1, whose stride-2 exists to
// shrink a 224×224 photograph early, run at stride 1 on the already small
// image; blocks 2 and 4, where the width grows to 24 and 40 channels, keep
// stride 2 (28 → 14 → 7); block 9 (to 96 channels) keeps stride 1 so the
// last stage stays at 7×7 as in the paper. Maps: 28 (stem, block 1), 14
// (blocks 2–3), 7 (blocks 4–11).
var Strides28 = [12]int{1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1}

// MobileNetV3Small builds torchvision's mobilenet_v3_small layout (stem,
// eleven inverted-residual blocks with squeeze-excite and hard-swish, a
// 1×1 conv to 576 channels, pooling and a 1024-wide classifier) for one
// input channel, with the given strides for the stem and the eleven blocks
// (Strides224 or Strides28). On 28×28 input the five stride-2 stages of
// Strides224 leave a 1×1 map.
func MobileNetV3Small(rng *rand.Rand, classes int, strides [12]int) *nn.Sequential {
	type block struct {
		k, exp, out int
		se          bool
		act         nn.ActKind
	}
	blocks := []block{
		{3, 16, 16, true, nn.ReLU},
		{3, 72, 24, false, nn.ReLU},
		{3, 88, 24, false, nn.ReLU},
		{5, 96, 40, true, nn.HardSwish},
		{5, 240, 40, true, nn.HardSwish},
		{5, 240, 40, true, nn.HardSwish},
		{5, 120, 48, true, nn.HardSwish},
		{5, 144, 48, true, nn.HardSwish},
		{5, 288, 96, true, nn.HardSwish},
		{5, 576, 96, true, nn.HardSwish},
		{5, 576, 96, true, nn.HardSwish},
	}
	s := &nn.Sequential{}
	stem := nn.NewConv2D(rng, 1, 16, 3, strides[0], 1, false)
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
		body.Add("dw.conv", nn.NewDepthwiseConv(rng, b.exp, b.k, strides[i+1], (b.k-1)/2))
		body.Add("dw.bn", nn.NewBatchNorm(b.exp))
		body.Add("dw.act", nn.NewActivation(b.act))
		if b.se {
			body.Add("se", nn.NewSqueezeExcite(rng, b.exp, makeDivisible(b.exp/4, 8)))
		}
		body.Add("project.conv", nn.NewConv2D(rng, b.exp, b.out, 1, 1, 0, false))
		body.Add("project.bn", nn.NewBatchNorm(b.out))
		name := fmt.Sprintf("block%d", i+1)
		if strides[i+1] == 1 && in == b.out {
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
