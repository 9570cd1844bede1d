#!/usr/bin/env python3
"""Reference figures measured in the same run as our Go benchmarks.

PyTorch (Debian's python3-torch, oneDNN on CPU) with 2 threads: the same
VGG-style network as internal/arch.VGG (width 32), one SGD training step on
a batch of 128, and inference at batch 1 and 256; plus numpy's OpenBLAS
sgemm on the conv-shaped product M=25088, K=288, N=64 and on 1024³.
Prints one line per figure: "name value unit". Used by bench/run.
"""
import sys
import time

import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(2)
torch.manual_seed(0)


def vgg(w=32):
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
    return nn.Sequential(
        *block(1, w), *block(w, w), nn.MaxPool2d(2),
        *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
        *block(2 * w, 4 * w), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * w * 9, 256), nn.ReLU(inplace=True),
        nn.Dropout(0.3), nn.Linear(256, 10))


def best_rate(fn, items, repeats=5, min_time=1.0):
    """Best items/second over `repeats` timed rounds of at least min_time."""
    fn()  # warm-up
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        best = max(best, n * items / dt)
    return best


def main():
    net = vgg()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(128, 1, 28, 28)
    y = torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

    net.train()
    print("pytorch_vgg_train_batch128 %.1f img/s" % best_rate(step, 128))
    net.eval()
    with torch.no_grad():
        x1 = torch.randn(1, 1, 28, 28)
        r1 = best_rate(lambda: net(x1), 1)
        print("pytorch_vgg_infer_batch1 %.1f img/s" % r1)
        print("pytorch_vgg_infer_batch1_latency %.3f ms" % (1000 / r1))
        x256 = torch.randn(256, 1, 28, 28)
        print("pytorch_vgg_infer_batch256 %.1f img/s" % best_rate(lambda: net(x256), 256))

    for name, (m, k, n) in {"conv": (25088, 288, 64), "1024": (1024, 1024, 1024)}.items():
        a = np.random.rand(m, k).astype(np.float32)
        b = np.random.rand(k, n).astype(np.float32)
        rate = best_rate(lambda: a @ b, 1)
        print("openblas_sgemm_%s %.1f GFLOP/s" % (name, rate * 2 * m * n * k / 1e9))
    print("torch %s numpy %s" % (torch.__version__, np.__version__), file=sys.stderr)


if __name__ == "__main__":
    main()
