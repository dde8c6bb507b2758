"""Tools for adaptive attacks: they plug into the one loop (`loop.pgd`) as a model or a gradient oracle.

`BPDA` swaps a module's backward pass for a smooth surrogate's, `EOT` averages a randomised model, `GradientFree`
replaces the gradient by an antithetic Gaussian estimate of a margin loss (Tramer et al. 2020 against k-WTA). A
transferred attack is the loop run on a surrogate model.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn

from .loop import objective


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation (Athalye et al. 2018): the value of `forward_module`, the
    gradient of `surrogate`. Use it to attack through a piece that is non-differentiable or masks gradients."""

    def __init__(self, forward_module: nn.Module, surrogate: nn.Module):
        super().__init__()
        self.forward_module, self.surrogate = forward_module, surrogate

    def forward(self, x):
        out = self.forward_module(x)
        s = self.surrogate(x)
        return s + (out - s).detach()  # value: out; d/dx: d surrogate / dx


def with_bpda(model: nn.Module, select: Callable[[nn.Module], bool],
              surrogate: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """A copy of `model` in which every submodule with select(m) is wrapped as BPDA(m, surrogate(m)).
    The copy shares no state with the original, so the model under test is never modified."""
    twin = copy.deepcopy(model)

    def swap(parent: nn.Module):
        for name, child in parent.named_children():
            if select(child):
                setattr(parent, name, BPDA(child, surrogate(child)))
            else:
                swap(child)

    swap(twin)
    return twin


class EOT(nn.Module):
    """Expectation over Transformation: the mean logits of `samples` forward passes of a randomised model.
    Its gradient is the mean of the samples' gradients."""

    def __init__(self, model: nn.Module, samples: int):
        super().__init__()
        if samples < 1:
            raise ValueError(f"EOT samples must be >= 1, got {samples}")
        self.model, self.samples = model, samples

    def forward(self, x):
        return torch.stack([self.model(x) for _ in range(self.samples)]).mean(0)


class GradientFree:
    """Gradient oracle from function values only: antithetic Gaussian sampling of the margin loss
    (as Tramer et al. 2020 used to break k-WTA). With u ~ N(0, I) and f the attacker's objective,

        grad ≈ mean_i [f(x + sigma u_i) - f(x - sigma u_i)] u_i / (2 sigma)

    It never calls backward, so masked or shattered gradients do not mislead it. Cost: `samples` forward passes
    per step and example (samples counts both signs)."""

    def __init__(self, model: nn.Module, sigma: float, samples: int, targeted: bool = False,
                 chunk: int = 4096):
        if sigma <= 0 or samples < 2:
            raise ValueError(f"GradientFree: need sigma > 0 and samples >= 2, got sigma={sigma}, samples={samples}")
        self.model, self.sigma, self.half, self.targeted, self.chunk = model, sigma, samples // 2, targeted, chunk

    @torch.no_grad()
    def __call__(self, x_adv, labels):
        n = len(x_adv)
        u = torch.randn(self.half, *x_adv.shape, device=x_adv.device)
        pts = torch.cat([x_adv + self.sigma * u, x_adv - self.sigma * u]).flatten(0, 1)  # [2h*n, ...]
        lab = labels.repeat(2 * self.half)
        vals = torch.cat([objective(self.model(pts[i:i + self.chunk]), lab[i:i + self.chunk], "margin",
                                    self.targeted) for i in range(0, len(pts), self.chunk)])
        vals = vals.view(2, self.half, n)
        w = (vals[0] - vals[1]) / (2 * self.sigma)  # [h, n]
        g = (w.view(self.half, n, *([1] * (x_adv.ndim - 1))) * u).mean(0)
        return g, self.model(x_adv)
