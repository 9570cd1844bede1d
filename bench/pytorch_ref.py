#!/usr/bin/env python3
"""Reference figures measured in the same run as our Go benchmarks.

PyTorch (Debian's python3-torch, oneDNN on CPU) with 2 threads: the same
VGG-style network as internal/arch.VGG (width 32), one SGD training step on
a batch of 128, and inference at batch 1 and 256; plus numpy's OpenBLAS
sgemm on the conv-shaped product M=25088, K=288, N=64 and on 1024³.
Prints one line per figure: "name value unit". Used by bench/run.

With --recipe fast it instead trains the same network with the recipe of
`fashion train -recipe fast` (Nesterov SGD, batch 256, one-cycle learning
rate peaking at 0.2 without momentum cycling, label smoothing 0.1, an
exponential moving average of the weights with decay 0.99, random shifts
of up to 2 pixels into zero padding and mirror images) on the official
Fashion-MNIST files in $FASHION_DATA, evaluates the average on the test
set and prints the wall time from start to written file:

    FASHION_DATA=... python3 bench/pytorch_ref.py --recipe fast --epochs 13
"""
import argparse
import copy
import gzip
import os
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


def read_idx(path):
    """The array in an IDX file, gzipped or not."""
    for name in (path, path + ".gz"):
        if os.path.exists(name):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(name, "rb") as f:
                data = f.read()
            dims = data[3]
            shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    sys.exit("pytorch_ref: %s(.gz) not found (set FASHION_DATA)" % path)


def augment(x, pad=2):
    """Random shifts of up to pad pixels (zero fill) and mirror images, per image."""
    n = x.shape[0]
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,))
    dy = torch.randint(0, 2 * pad + 1, (n,))
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    flip = torch.rand(n) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def fast_recipe(epochs, out):
    """Trains the fast recipe; prints accuracy and wall time."""
    t0 = time.perf_counter()
    d = os.environ.get("FASHION_DATA", "data/fashion-mnist")
    mean, std = 0.2860, 0.3530
    def load(prefix):
        x = read_idx(os.path.join(d, prefix + "-images-idx3-ubyte"))
        y = read_idx(os.path.join(d, prefix + "-labels-idx1-ubyte"))
        x = (torch.from_numpy(x.astype(np.float32)) / 255 - mean) / std
        return x.unsqueeze(1), torch.from_numpy(y.astype(np.int64))
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    # Padding fills with the code of black (0 before normalization).
    black = (0 - mean) / std
    net = vgg()
    avg = copy.deepcopy(net)
    batch = 256
    steps = epochs * (len(xtr) // batch)
    # Weight decay on the weights of convolutions and linear layers only,
    # as fashion train does (not on biases or batch-norm parameters).
    decay = [p for p in net.parameters() if p.dim() > 1]
    rest = [p for p in net.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0}],
                          lr=0.2, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=steps, cycle_momentum=False)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    t = 0
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        for b in range(len(xtr) // batch):
            idx = perm[b * batch:(b + 1) * batch]
            x = augment(xtr[idx] - black) + black
            opt.zero_grad()
            loss_fn(net(x), ytr[idx]).backward()
            opt.step()
            sched.step()
            # The average's decay warms up as (1+t)/(10+t), as in fashion train.
            d = min(0.99, (1 + t) / (10 + t))
            t += 1
            with torch.no_grad():
                for pa, pn in zip(avg.state_dict().values(), net.state_dict().values()):
                    if pa.dtype.is_floating_point:
                        pa.mul_(d).add_(pn, alpha=1 - d)
                    else:
                        pa.copy_(pn)
        print("epoch %d/%d %.0f s" % (epoch + 1, epochs, time.perf_counter() - t0), file=sys.stderr)
    avg.eval()
    with torch.no_grad():
        right = sum((avg(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item() for i in range(0, len(xte), 1000))
    torch.save(avg.state_dict(), out)
    print("pytorch_fast_recipe_epochs %d" % epochs)
    print("pytorch_fast_recipe_test_accuracy %.4f" % (right / len(xte)))
    print("pytorch_fast_recipe_wall %.1f s" % (time.perf_counter() - t0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", choices=["fast"], help="train a recipe instead of the step benchmarks")
    ap.add_argument("--epochs", type=int, default=8, help="epochs of the recipe")
    ap.add_argument("--out", default="pytorch-fast.pt", help="where the recipe's weights are written")
    args = ap.parse_args()
    if args.recipe:
        fast_recipe(args.epochs, args.out)
        return
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
