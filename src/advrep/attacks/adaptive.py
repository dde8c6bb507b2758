"""Tools for adaptive attacks: they plug into the one loop (`loop.pgd`) as a model or a gradient oracle.

`BPDA` swaps a module's backward pass for a smooth surrogate's, `EOT` averages a randomised model, `GradientFree`
replaces the gradient by an antithetic Gaussian estimate of a margin loss (Tramer et al. 2020 against k-WTA). A
transferred attack is the loop run on a surrogate model.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

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
        if not (torch.is_grad_enabled() and x.requires_grad):  # values only (success checks, Square's queries):
            return out  # the surrogate would add its cost and nothing else
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
    per step and example (samples counts both signs). `samples` is a count, or a schedule of (until_step, count)
    pairs: Tramer et al. use 100 samples for steps 0-19, 1,000 for 20-39 and 20,000 from then on, refining the
    estimate where the cheap one has not yet succeeded (the loop only calls the oracle on unbroken examples)."""

    def __init__(self, model: nn.Module, sigma: float, samples: int | Sequence[tuple[int, int]],
                 targeted: bool = False, chunk: int = 4096):
        schedule = [(10**9, samples)] if isinstance(samples, int) else [tuple(s) for s in samples]
        if sigma <= 0 or any(c < 2 for _, c in schedule):
            raise ValueError(f"GradientFree: need sigma > 0 and samples >= 2, got sigma={sigma}, samples={samples}")
        self.model, self.sigma, self.schedule, self.targeted, self.chunk = model, sigma, schedule, targeted, chunk
        self.calls = 0  # one call per attack step

    def samples(self, step: int) -> int:
        return next((c for until, c in self.schedule if step < until), self.schedule[-1][1])

    @torch.no_grad()
    def __call__(self, x_adv, labels):
        half = self.samples(self.calls) // 2
        self.calls += 1
        n = len(x_adv)
        u = torch.randn(half, *x_adv.shape, device=x_adv.device)
        pts = torch.cat([x_adv + self.sigma * u, x_adv - self.sigma * u]).flatten(0, 1)  # [2h*n, ...]
        lab = labels.repeat(2 * half)
        vals = torch.cat([objective(self.model(pts[i:i + self.chunk]), lab[i:i + self.chunk], "margin",
                                    self.targeted) for i in range(0, len(pts), self.chunk)])
        vals = vals.view(2, half, n)
        w = (vals[0] - vals[1]) / (2 * self.sigma)  # [h, n]
        g = (w.view(half, n, *([1] * (x_adv.ndim - 1))) * u).mean(0)
        return g, self.model(x_adv)


def gradient_free(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat, steps: int, step_size: float,
                  sigma: float, samples: Sequence[tuple[int, int]] = ((20, 100), (40, 1000), (100, 20000))):
    """Tramer et al. 2020's gradient-free attack on k-WTA: `steps` signed steps of `step_size` along the
    antithetic Gaussian estimate of the margin loss's gradient (sampling scale `sigma`), no random start, each
    example frozen at its first success; the sample count grows with the step (their 100 -> 1,000 -> 20,000).
    A model coupled through its batch's first example is attacked as `loop.pgd` attacks it (`loop.by_anchor`)."""
    from .loop import by_anchor, coupled_through_first, pgd

    if len(x) > 1 and coupled_through_first(model):  # the oracle is bound to the model: hold the first example
        return by_anchor(gradient_free, model, x, y, threat, steps, step_size, sigma, samples)
    return pgd(model, x, y, threat, steps, step_size, random_start=False, loss="margin", early_stop=True,
               grad=GradientFree(model, sigma, samples))
