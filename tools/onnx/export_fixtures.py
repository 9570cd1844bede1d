#!/usr/bin/env python3
"""Export the ONNX test fixtures of internal/onnx from PyTorch.

Writes, into testdata/onnx/ (or the directory given as the first argument):

  mobilenet_v3_small.onnx.gz  torchvision's mobilenet_v3_small(num_classes=10)
                            with random weights and batch-norm statistics, on
                            [N,3,28,28] input, opset 17 (HardSwish operators)
  ops13.onnx                a small network using every other operator the
                            loader supports, on [N,1,28,28] input, opset 13
  ops17_softmax_rgb.onnx    the same network on [N,3,28,28] input whose first
                            operation is not a convolution, ending in
                            Softmax, opset 17
  <name>.expected.json      for each: fixed random grayscale inputs
                            ("inputs", [N,1,28,28] flattened; 3-channel
                            models get them repeated) and PyTorch's outputs

Requires python3-torch and python3-torchvision (Debian: apt-get install
python3-torch python3-torchvision). Run from the repository root:

  nice -n 19 /usr/bin/python3 tools/onnx/export_fixtures.py
"""

import gzip
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

N_INPUTS = 5


class Ops(nn.Module):
    """Exercises grouped, dilated, strided and depthwise convolutions, batch
    norm folded by the exporter and not, Clip, Sigmoid, HardSigmoid,
    HardSwish, LeakyRelu, Add/Sub/Mul/Div with constants and between maps,
    Concat, MaxPool and AveragePool with padding and ceil mode,
    GlobalAveragePool, Squeeze/Unsqueeze, view(N, -1) (Shape, Gather,
    Unsqueeze, Concat, Reshape), Gemm, batch norm after Gemm, MatMul, and
    optionally Softmax."""

    def __init__(self, in_ch=1, softmax=False):
        super().__init__()
        self.in_ch, self.softmax = in_ch, softmax
        self.c1 = nn.Conv2d(in_ch, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=2)
        self.dw = nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
        self.c3 = nn.Conv2d(16, 12, 1)
        self.bn2 = nn.BatchNorm2d(12)
        self.fc1 = nn.Linear(12 * 4 * 4, 32)
        self.bn1d = nn.BatchNorm1d(32)
        self.w = nn.Parameter(torch.randn(32, 10) * 0.3)
        self.b = nn.Parameter(torch.randn(10) * 0.1)

    def forward(self, x):
        if self.in_ch == 3:
            x = x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
        y = F.relu6(self.bn1(self.c1(x)))
        a = torch.sigmoid(self.c2(y))
        b = F.hardswish(self.dw(F.max_pool2d(y, 2, 2)))
        z = torch.cat([a, b * 0.5 - 0.1], 1)
        z = self.c3(z)
        z = z + F.hardsigmoid(z)
        z = F.leaky_relu(self.bn2(z), 0.1)
        z = F.avg_pool2d(z, 3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)
        z = F.max_pool2d(z, 3, stride=1, padding=1)
        z = F.avg_pool2d(z, 2)
        gate = F.adaptive_avg_pool2d(z, 1).squeeze(-1).squeeze(-1)
        gate = torch.sigmoid(gate)[:, :, None, None]
        z = 2.0 - z * gate
        z = z / 3.0
        f = z.view(z.size(0), -1)
        f = F.dropout(self.bn1d(self.fc1(f)), 0.5, training=self.training).relu()
        out = f @ self.w + self.b
        if self.softmax:
            out = F.softmax(out, 1)
        return out


def randomise_bn(model, gen):
    """Give every batch norm non-trivial statistics, so that folding them is
    tested, while keeping activations of order one."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


def quantise(model, levels=15):
    """Round every weight and batch-norm statistic to a power-of-two grid
    of about ±levels steps. The network is still torchvision's, with
    random weights, but its file then compresses about fivefold, so the
    fixture stays small enough to commit."""
    with torch.no_grad():
        tensors = list(model.parameters()) + [b for b in model.buffers() if b.dtype.is_floating_point]
        for t in tensors:
            peak = t.abs().max().item()
            if peak == 0:
                continue
            step = 2.0 ** math.ceil(math.log2(peak / levels))
            t.copy_(torch.round(t / step) * step)


def gzip_file(path):
    """Replace path by path.gz."""
    with open(path, "rb") as src, gzip.open(path + ".gz", "wb", compresslevel=9) as dst:
        dst.write(src.read())
    os.remove(path)
    print("%s.gz: %d bytes" % (path, os.path.getsize(path + ".gz")))


def export(model, name, in_ch, opset, out_dir, gen):
    model.eval()
    grey = torch.randn(N_INPUTS, 1, 28, 28, generator=gen)
    x = grey.repeat(1, in_ch, 1, 1)
    with torch.no_grad():
        want = model(x)
    path = os.path.join(out_dir, name + ".onnx")
    torch.onnx.export(model, x, path, opset_version=opset,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    expected = {
        "model": name + ".onnx",
        "exported_by": "torch %s, opset %d" % (torch.__version__, opset),
        "input_channels": in_ch,
        "inputs": [round(v, 6) for v in grey.flatten().tolist()],
        "outputs": [[round(v, 6) for v in row] for row in want.tolist()],
    }
    with open(os.path.join(out_dir, name + ".expected.json"), "w") as f:
        json.dump(expected, f)
    print("%s: %d bytes, outputs in [%.3f, %.3f]" % (path, os.path.getsize(path), want.min(), want.max()))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("testdata", "onnx")
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(20240613)
    torch.manual_seed(20240613)

    mnv3 = torchvision.models.mobilenet_v3_small(num_classes=10)
    randomise_bn(mnv3, gen)
    # torchvision initialises the classifier with std 0.01, which leaves
    # logits too small for an absolute tolerance to mean anything; PyTorch's
    # default initialisation gives them order one.
    for m in mnv3.classifier.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    # Random features through eleven blocks are small: rescale the last
    # layer so that the logits spread over about ±2.
    mnv3.eval()
    with torch.no_grad():
        probe = mnv3(torch.randn(16, 3, 28, 28, generator=gen))
        last = mnv3.classifier[-1]
        scale = 1.0 / probe.std().item()
        last.weight.mul_(scale)
        last.bias.mul_(scale)
    quantise(mnv3)
    export(mnv3, "mobilenet_v3_small", 3, 17, out_dir, gen)
    gzip_file(os.path.join(out_dir, "mobilenet_v3_small.onnx"))

    ops = Ops()
    randomise_bn(ops, gen)
    export(ops, "ops13", 1, 13, out_dir, gen)

    rgb = Ops(in_ch=3, softmax=True)
    randomise_bn(rgb, gen)
    export(rgb, "ops17_softmax_rgb", 3, 17, out_dir, gen)


if __name__ == "__main__":
    main()
