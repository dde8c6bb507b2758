"""Models: one activation factory, the architectures that use it, and saving them as state dict + JSON config.

Every model takes inputs in [0, 1] and holds its input normalisation inside (`Normalize`), so every attack works in
the same pixel space whatever the dataset. A model is rebuilt from its JSON config alone (`build`), so checkpoints
are plain tensors (`torch.load(weights_only=True)`), never pickled code.
"""
from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import STATS

# ---------------------------------------------------------------------------------------------------------------
# Activations: every architecture asks this table, so an experiment swaps an activation by name.


class ParametricSoftplus(nn.Module):
    """log(1 + exp(alpha*x)) / alpha: softplus sharpened towards ReLU (Xie et al. use alpha = 10)."""

    def __init__(self, alpha: float = 10.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return F.softplus(x, beta=self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SmoothReLU(nn.Module):
    """Xie et al.'s SmoothReLU: x - log(1 + alpha*x) / alpha for x >= 0, else 0. Its value and first derivative
    (alpha*x / (1 + alpha*x) for x >= 0) are continuous at 0, unlike ReLU's; it tends to ReLU as alpha grows.
    alpha is our choice (the paper's value is not in ANCHORS.md)."""

    def __init__(self, alpha: float = 20.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        p = x.clamp_min(0)
        return p - torch.log1p(self.alpha * p) / self.alpha

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class _ReluSmoothGrad(torch.autograd.Function):
    """ReLU's value; the derivative of log(1 + exp(alpha*x)) / alpha, i.e. sigmoid(alpha*x), in the backward pass."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * torch.sigmoid(ctx.alpha * x), None


class SwitchableReLU(nn.Module):
    """ReLU forward; backward either ReLU's step (smooth=False) or parametric softplus's sigmoid(alpha*x)
    (smooth=True). Xie et al.'s ablation switches `smooth` separately for the attacker's gradient and for the
    optimizer's gradient; see `smooth_backward`."""

    def __init__(self, alpha: float = 10.0):
        super().__init__()
        self.alpha, self.smooth = alpha, False

    def forward(self, x):
        return _ReluSmoothGrad.apply(x, self.alpha) if self.smooth else F.relu(x)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, smooth={self.smooth}"


@contextlib.contextmanager
def smooth_backward(model: nn.Module, on: bool) -> Iterator[nn.Module]:
    """Within the block, every SwitchableReLU of `model` back-propagates smoothly (on) or as ReLU (off)."""
    acts = [m for m in model.modules() if isinstance(m, SwitchableReLU)]
    before = [m.smooth for m in acts]
    for m in acts:
        m.smooth = on
    try:
        yield model
    finally:
        for m, b in zip(acts, before):
            m.smooth = b


class KWTA(nn.Module):
    """k-Winners-Take-All (Xiao et al. 2020): per example, keep the k largest values of the whole layer output
    (all of C*H*W for a conv layer, all units for a dense one) and set the rest to 0.

    k = max(1, floor(gamma * size)), as int(sr * size) in the authors' code. Ties: every value equal to the k-th
    largest is kept (the authors' `x >= kth value` mask), so more than k survive only when values tie at the
    threshold. One top-k over the flattened batch, no loop over examples.
    """

    def __init__(self, gamma: float = 0.1):
        super().__init__()
        if not 0 < gamma <= 1:
            raise ValueError(f"k-WTA sparsity ratio gamma must be in (0, 1], got {gamma}")
        self.gamma = gamma

    def k(self, size: int) -> int:
        return max(1, int(self.gamma * size))

    def threshold(self, x: torch.Tensor) -> torch.Tensor:
        flat = _rows(x.detach())  # the mask is piecewise constant: no gradient flows through the threshold
        kth = kth_largest(flat, [self.k(flat.shape[1])])[0]
        return kth.view(-1, *([1] * (x.ndim - 1)))

    def forward(self, x):
        # where() keeps a bool mask for the backward pass (a multiply by a float mask cost a cast, a second tensor
        # and a multiply each way) and, unlike masked_fill, keeps a channels-last input channels-last; same values
        return torch.where(x >= self.threshold(x), x, 0.0)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x as [N, everything else] without a copy: per example, k-WTA ranks all C*H*W values, so their order does
    not matter, and a channels-last batch is viewed in its own memory order (flatten(1) would copy it to NCHW's:
    a sixth of a k-WTA net's attack step)."""
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).reshape(len(x), -1)
    return x.flatten(1)


# numpy's introselect (np.partition) finds a row's k-th largest value on one core 3x faster than torch.topk on two,
# on float values alone (topk also moves an int64 index with each), and rows split across torch's threads take it
# to 6x (measured: [500, 25088] rows, k = 2,508: 11 ms against 63 ms). Same values: the k-th largest is one
# element of the row, whichever algorithm finds it. `SELECT_NUMPY = False` gives torch.topk (the benchmark's
# baseline; `torch_defaults`). CUDA tensors, and dtypes numpy lacks (bf16), always take torch.topk.
SELECT_NUMPY = True
_POOLS: dict = {}  # one thread pool per process id: a pool's threads do not survive a fork


def _pool(workers: int) -> ThreadPoolExecutor:
    key = (os.getpid(), workers)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="advrep-select")
    return _POOLS[key]


def kth_largest(flat: torch.Tensor, ks: list[int]) -> list[torch.Tensor]:
    """Per row of a 2-D tensor, its k-th largest value for each k of `ks` (1 <= k <= row length): a list of [N]
    tensors. Ties count once per element, as in a sorted row (the k-th largest of [3, 3, 1] for k = 2 is 3)."""
    n, d = flat.shape
    if not all(1 <= k <= d for k in ks):
        raise ValueError(f"kth_largest: every k must be in [1, {d}], got {ks}")
    big = max(ks)
    if not (SELECT_NUMPY and flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64)
            and not flat.requires_grad):
        # an unsorted top-k and the few smallest of it: 1.5x faster than a sorted top-k here
        top = flat.topk(big, dim=1, sorted=False).values
        low = top.topk(big - min(ks) + 1, dim=1, largest=False).values  # ascending: the big-th largest first
        return [low[:, big - k] for k in ks]
    a = flat.contiguous().numpy()
    workers = min(torch.get_num_threads(), n) if a.size >= 1 << 16 else 1  # small rows: a thread costs more
    bounds = [n * i // workers for i in range(workers + 1)]

    def part(i):
        # one partition at the largest k (np.partition given several positions is 4-6x slower than given one);
        # what lies right of it are the row's big - 1 largest values, where every smaller k is found (fmin: a NaN
        # counts as the largest value, as in torch.topk and np.partition)
        p = np.partition(a[bounds[i]:bounds[i + 1]], d - big, axis=1)
        right = p[:, d - big + 1:]
        return np.stack([p[:, d - big] if k == big else np.fmin.reduce(right, axis=1) if k == big - 1 else
                         np.partition(right, big - 1 - k, axis=1)[:, big - 1 - k] for k in ks], 1)

    got = np.concatenate(list(_pool(workers).map(part, range(workers)))) if workers > 1 else part(0)
    got = torch.from_numpy(got).to(flat.device)
    return [got[:, j] for j in range(len(ks))]


class BatchKWTA(KWTA):
    """The blog replication's k-WTA layer, not the paper's: the threshold is the k-th largest value of the batch's
    *first* example (over all of its units: C*H*W for a conv layer), and every example of the batch is masked with
    it, as `tf.math.top_k(x[0], k)` does in that code. Example 0 keeps k units; every other example keeps whatever
    exceeds example 0's threshold, anywhere from none to all. The output depends on the batch's size, order and
    content (with a batch of one it is the paper's per-example k-WTA). No gradient flows through the threshold (the
    mask is piecewise constant), so the coupling is invisible to an attacker's gradient. (The stored copy of the
    blog's code is incomplete; taking the k-th largest of the flattened x[0], one scalar, is our reading of its
    description.)"""

    couples_batch = "first"  # through example 0 only: attacks take it alone, then the rest behind its result
    # (attacks.loop.by_anchor)

    def threshold(self, x: torch.Tensor) -> torch.Tensor:
        first = _rows(x.detach()[:1])
        kth = kth_largest(first, [self.k(first.shape[1])])[0]
        return kth.view(*([1] * x.ndim))


class SoftKWTA(nn.Module):
    """A smooth surrogate of KWTA for BPDA: x * sigmoid((x - t) / T), with t halfway between the k-th and the
    (k+1)-th largest values (held constant) and T a temperature relative to the spread of the layer (T = temperature
    * std of x per example). As T -> 0 it tends to KWTA; its gradient says how moving each unit across the
    threshold changes the output. With batch=True the threshold is example 0's for the whole batch (BatchKWTA's
    surrogate)."""

    def __init__(self, gamma: float = 0.1, temperature: float = 0.1, batch: bool = False):
        super().__init__()
        self.kwta, self.temperature, self.batch = KWTA(gamma), temperature, batch

    def forward(self, x):
        flat = _rows(x.detach())
        k = self.kwta.k(flat.shape[1])
        rows = flat[:1] if self.batch else flat  # the batch's surrogate: example 0's threshold for all
        if k < flat.shape[1]:
            kth, next_ = kth_largest(rows, [k, k + 1])
            t = (kth + next_) / 2
        else:
            t = kth_largest(rows, [k])[0] - 1
        if self.batch:
            t = t.expand(len(x))
        t = t.view(-1, *([1] * (x.ndim - 1)))
        scale = (x.detach().flatten(1).std(1) * self.temperature).clamp_min(1e-6).view_as(t)  # NCHW order: its rounding
        return x * torch.sigmoid((x - t) / scale)


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": lambda **kw: nn.ReLU(),
    "softplus": lambda **kw: nn.Softplus(),
    "psoftplus": lambda **kw: ParametricSoftplus(10.0),
    "silu": lambda **kw: nn.SiLU(),
    "gelu": lambda **kw: nn.GELU(),
    "elu": lambda **kw: nn.ELU(alpha=1.0),
    "smoothrelu": lambda **kw: SmoothReLU(20.0),
    "relu_smoothgrad": lambda **kw: SwitchableReLU(10.0),  # SAT ablation; switched by smooth_backward
    "kwta": lambda gamma=0.1, **kw: KWTA(gamma),
    "kwta_batch": lambda gamma=0.1, **kw: BatchKWTA(gamma),  # the blog's layer: example 0's threshold for all
    "relu_kwta": lambda gamma=0.1, **kw: nn.Sequential(nn.ReLU(), KWTA(gamma)),  # the blog's ReLU + k-WTA
    "sigmoid": lambda **kw: nn.Sigmoid(),  # Szegedy et al.'s fully connected nets
    "tanh": lambda **kw: nn.Tanh(),
}


def activation(name: str, gamma: float | None = None) -> nn.Module:
    """A fresh activation module by name; `gamma` is k-WTA's sparsity ratio (ignored by the others)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}', expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name](**({} if gamma is None else {"gamma": gamma}))


Act = Callable[[], nn.Module]  # makes a fresh activation module for each slot of an architecture

# ---------------------------------------------------------------------------------------------------------------
# Building blocks


class Normalize(nn.Module):
    """(x - mean) / std per channel, as the model's first layer: attacks see raw [0, 1] pixels."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return torch.sub(x, self.mean).div_(self.std)  # in place on the difference: one buffer less, same values


class Classifier(nn.Module):
    """normalise -> body -> logits, with the config that rebuilds it."""

    def __init__(self, body: nn.Module, dataset: str, config: dict):
        super().__init__()
        self.norm = Normalize(*STATS[dataset])
        self.body = body
        self.config = dict(config)

    def forward(self, x):
        return self.body(self.norm(x))


def cpu_info(field: str) -> str | None:
    """One field of /proc/cpuinfo ('vendor_id', 'model name'), None where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(field)), None)
    except OSError:
        return None


def _mkl_slow_cpu() -> bool:
    """True on AMD CPUs with AVX-512, where MKL (torch's CPU matmul on x86 wheels) takes a slower code path than
    oneDNN: measured here, fp32 on 2 threads, MKL 200 GFLOP/s against oneDNN's 456 on an AMD EPYC with AVX-512. Not
    on an Intel Xeon (Ice Lake: MKL 214-312 against oneDNN 191-288, and oneDNN's dense path made a maxout training
    step 1.4x slower), nor on an AMD EPYC without AVX-512 (square GEMMs: MKL 30-62 GFLOP/s, oneDNN 30-71 on a
    drifting VM; through oneDNN the maxout training step ran at 0.68x torch's kernel, timed in turns). Read from
    /proc/cpuinfo, not timed, so that the kernel (and with it the rounding) is the same on every run on one machine."""
    return cpu_info("vendor_id") == "AuthenticAMD" and "avx512f" in (cpu_info("flags") or "").split()


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state dict) whose product runs through oneDNN on a CPU when that is faster.

    On AMD CPUs with AVX-512, torch's CPU matmul (MKL) reaches ~200 GFLOP/s in fp32 on 2 threads, about an AVX2 rate,
    while oneDNN's GEMM reaches ~450 (both measured by benchmarks/throughput.py); on Intel CPUs MKL is the faster of
    the two, and on AMD CPUs without AVX-512 oneDNN's dense path is slower in training, so torch's kernel is kept
    (`_mkl_slow_cpu`). A dense layer is a 1x1 convolution over a 1 x batch image in
    channels-last layout, which is the same memory as the [batch, features] matrix, so oneDNN computes it with no
    copy. On AMD it pays from about 16M multiply-adds per call and a batch of 64 (measured fwd+bwd: 1.3-2.0x above
    that, 0.4-1.0x on smaller products, where MKL keeps them); the values are fp32 either way, the rounding is
    another summation order. `ONEDNN = False` gives torch's default kernel (the benchmark's baseline).
    """

    ONEDNN = _mkl_slow_cpu()  # class-wide switch; see `torch_linear`
    MIN_BATCH, MIN_MACS = 64, 1 << 24

    def forward(self, x):
        b = x.shape[0]
        if (Linear.ONEDNN and x.dim() == 2 and x.device.type == "cpu" and b >= self.MIN_BATCH
                and b * self.in_features * self.out_features >= self.MIN_MACS):
            y = F.conv2d(x.reshape(1, b, 1, -1).permute(0, 3, 1, 2), self.weight[:, :, None, None], self.bias)
            return y.permute(0, 2, 3, 1).reshape(b, -1)
        return F.linear(x, self.weight, self.bias)


@contextlib.contextmanager
def onednn_linear(on: bool = True) -> Iterator[None]:
    """Every advrep Linear on oneDNN's GEMM (on, above the size threshold) or on torch's kernel (off) while inside,
    whatever this CPU's default (tests check both paths on any machine)."""
    was, Linear.ONEDNN = Linear.ONEDNN, on
    try:
        yield
    finally:
        Linear.ONEDNN = was


def torch_linear():
    """Every advrep Linear on torch's default kernel while inside (the plain baselines of the benchmark)."""
    return onednn_linear(False)


@contextlib.contextmanager
def torch_topk() -> Iterator[None]:
    """k-WTA's selection on torch.topk, not numpy's introselect, while inside (`kth_largest`; tests, baselines)."""
    global SELECT_NUMPY
    was, SELECT_NUMPY = SELECT_NUMPY, False
    try:
        yield
    finally:
        SELECT_NUMPY = was


@contextlib.contextmanager
def torch_defaults() -> Iterator[None]:
    """torch's own kernels for everything advrep swaps (dense products, k-WTA's selection): the benchmark's plain
    baselines."""
    with torch_linear(), torch_topk():
        yield


def _dropout(p: float) -> list[nn.Module]:
    return [nn.Dropout(p)] if p > 0 else []


def mlp(in_dim: int, widths: list[int], act: Act, classes: int = 10, dropout: tuple = (0.0, 0.0)) -> nn.Module:
    """Fully connected net; widths [] is softmax regression (Szegedy's FC10). dropout: (input, hidden) rates."""
    layers: list[nn.Module] = [nn.Flatten(), *_dropout(dropout[0])]
    for w in widths:
        layers += [Linear(in_dim, w), act(), *_dropout(dropout[1])]
        in_dim = w
    layers.append(Linear(in_dim, classes))
    return nn.Sequential(*layers)


class RBF(nn.Module):
    """A shallow RBF network (Goodfellow et al.'s Section 7): one unit per class, logit_i = -sum_j beta_ij
    (x_j - mu_ij)^2 with a learned centre mu_i and non-negative precisions beta_i. Far from every centre, every
    logit is very negative: it cannot be confident about inputs unlike its training data."""

    def __init__(self, in_dim: int, classes: int = 10):
        super().__init__()
        self.mu = nn.Parameter(torch.randn(classes, in_dim) * 0.1)
        self.rho = nn.Parameter(torch.full((classes, in_dim), -3.0))  # beta = softplus(rho)

    def forward(self, x):
        beta = F.softplus(self.rho)
        return -((x[:, None, :] - self.mu[None]) ** 2 * beta[None]).sum(-1)


class Maxout(nn.Module):
    """A dense maxout layer (Goodfellow et al. 2013): `units` outputs, each the max of `pieces` linear units."""

    def __init__(self, in_dim: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = Linear(in_dim, units * pieces)

    def forward(self, x):
        # max, not amax: the same values, and its backward scatters into the winning piece by index (amax's
        # compares, counts and divides to split ties: 1.4x the layer's cost in an attack step, measured)
        return self.linear(x).view(len(x), self.units, self.pieces).max(2).values


def maxout_mlp(in_dim: int, widths: list[int], pieces: int = 5, classes: int = 10,
               dropout: tuple = (0.0, 0.0)) -> nn.Module:
    """Goodfellow et al.'s MNIST maxout net: hidden maxout layers of 5 pieces, softmax on top; dropout optional."""
    layers: list[nn.Module] = [nn.Flatten(), *_dropout(dropout[0])]
    for w in widths:
        layers += [Maxout(in_dim, w, pieces), *_dropout(dropout[1])]
        in_dim = w
    layers.append(Linear(in_dim, classes))
    return nn.Sequential(*layers)


def mnist_cnn(widths: list[int], act: Act, classes: int = 10) -> nn.Module:
    """Two conv-pool blocks and a hidden dense layer: ~99.2% on MNIST in two epochs on a laptop CPU."""
    c1, c2, fc = widths
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Flatten(), Linear(c2 * 7 * 7, fc), act(), Linear(fc, classes),
    )


def xiao_mnist(widths: list[int], act: Act, classes: int = 10) -> nn.Module:
    """Xiao et al.'s MNIST layout (their code): 3x3 convs of widths[0:4] channels with strides 1, 2, 1, 2, the
    activation (k-WTA in their net) after each and no BatchNorm, then a dense layer of widths[4] units (20,000 in
    theirs) with the activation, then the logits."""
    c1, c2, c3, c4, hidden = widths
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), act(), nn.Conv2d(c1, c2, 3, stride=2, padding=1), act(),
        nn.Conv2d(c2, c3, 3, padding=1), act(), nn.Conv2d(c3, c4, 3, stride=2, padding=1), act(),
        nn.Flatten(), Linear(c4 * 7 * 7, hidden), act(), Linear(hidden, classes),
    )


class Scale(nn.Module):
    def __init__(self, s: float):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s


def cifar_cnn(widths: list[int], act: Act, classes: int = 10) -> nn.Module:
    """A small fast CIFAR-10 net in the style of Keller Jordan's airbench (2x2 stem, three conv-pool-conv blocks,
    BatchNorm, global max-pool), sized so that a 2-core CPU trains it to ~87% in under ten minutes. widths: the
    three blocks' channels, optionally followed by the stem's (default 24)."""

    def conv_bn(ci, co):
        return [nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), act()]

    def block(ci, co):
        return nn.Sequential(*conv_bn(ci, co), nn.MaxPool2d(2), *conv_bn(co, co))

    a, b, c, stem = (*widths, 24) if len(widths) == 3 else widths
    return nn.Sequential(
        nn.Conv2d(3, stem, 2, padding=0), act(),
        block(stem, a), block(a, b), block(b, c),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), Linear(c, classes, bias=False),
        Scale(1 / 9),  # airbench's logit temperature: keeps early logits small, steadies training
    )


def resnet(depth: int, act: Act, classes: int = 10) -> nn.Module:
    """torchvision ResNet-18/50 adapted to 32x32 inputs (3x3 stride-1 stem, no max-pool), as in Madry's and
    Ilyas's CIFAR code; every ReLU replaced by the chosen activation."""
    import torchvision

    net = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth](num_classes=classes)
    net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    _swap_relu(net, act)
    return net


def _swap_relu(module: nn.Module, act: Act) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, act())
        else:
            _swap_relu(child, act)


# architecture name -> default widths (None: the architecture has fixed widths)
ARCHS: dict[str, list[int] | None] = {
    "mlp": [100, 100],
    "maxout": [240, 240],
    "rbf": [],
    "mnist_cnn": [32, 64, 128],
    "xiao_mnist": [32, 32, 64, 64, 20000],
    "cifar_cnn": [32, 64, 64],
    "resnet18": None,
    "resnet50": None,
}
INPUT_SHAPE = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def build(config: dict) -> Classifier:
    """Build a model from {'arch', 'activation', 'widths', 'dataset'} (+ 'gamma' for k-WTA); fresh weights."""
    arch, name, dataset = config["arch"], config.get("activation", "relu"), config["dataset"]
    gamma = config.get("gamma")  # k-WTA's sparsity ratio; absent for every other activation
    activation(name, gamma)  # fail early on an unknown name

    def act() -> nn.Module:
        return activation(name, gamma)

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}', expected one of {sorted(ARCHS)}")
    widths = config.get("widths")
    widths = list(ARCHS[arch] or []) if widths is None else list(widths)
    classes = config.get("classes", 10)
    dropout = tuple(config.get("dropout") or (0.0, 0.0))
    if arch in ("mlp", "maxout", "rbf"):
        c, h, w = INPUT_SHAPE[dataset]
        body = (mlp(c * h * w, widths, act, classes, dropout) if arch == "mlp" else
                maxout_mlp(c * h * w, widths, classes=classes, dropout=dropout) if arch == "maxout" else
                nn.Sequential(nn.Flatten(), RBF(c * h * w, classes)))
    elif arch == "mnist_cnn":
        _need(arch, widths, 3, dataset, "mnist")
        body = mnist_cnn(widths, act)
    elif arch == "xiao_mnist":
        _need(arch, widths, 5, dataset, "mnist")
        body = xiao_mnist(widths, act)
    elif arch == "cifar_cnn":
        _need(arch, widths, 4 if len(widths) == 4 else 3, dataset, "cifar10")
        body = cifar_cnn(widths, act)
    else:
        _need(arch, widths, 0, dataset, "cifar10")
        body = resnet(int(arch.removeprefix("resnet")), act)
    saved = {"arch": arch, "activation": name, "widths": widths, "dataset": dataset}
    saved |= ({} if gamma is None else {"gamma": gamma}) | ({"classes": classes} if classes != 10 else {})
    return Classifier(body, dataset, saved | ({"dropout": list(dropout)} if any(dropout) else {}))


def _need(arch: str, widths: list[int], n: int, dataset: str, wanted: str) -> None:
    if dataset != wanted:
        raise ValueError(f"model.arch '{arch}' is built for {wanted}, not {dataset}")
    if len(widths) != n:
        raise ValueError(f"model.widths for '{arch}' must hold {n} numbers, got {widths}")


def save(model: Classifier, directory: str | Path) -> None:
    """Write model.pt (state dict of tensors) and model.json (the config that rebuilds it), atomically."""
    from .store import atomic, save_json

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic(directory / "model.pt") as f:
        torch.save(state, f)
    save_json(directory / "model.json", model.config)


def load(directory: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Rebuild a saved model in eval mode."""
    from .data import DataError

    directory = Path(directory)
    for f in ("model.json", "model.pt"):
        if not (directory / f).is_file():
            raise DataError(f"{directory / f}: missing (expected a model saved by advrep.models.save; run the stage "
                            "that trains it, e.g. `dvc repro`)")
    config = json.loads((directory / "model.json").read_text())
    model = build(config)
    model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
    return model.to(device).eval()


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
