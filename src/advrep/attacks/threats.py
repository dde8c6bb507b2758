"""Threat models: an eps-ball around the clean input intersected with the [0, 1] pixel box.

Each threat model knows its norm as one unit: a random start inside the ball, the steepest-ascent direction for
that norm, the projection back onto ball ∩ box, and how to measure a perturbation. The attack loop (`loop.pgd`)
asks only these four things, so a new norm is one small class here.
"""
from __future__ import annotations

import math

import torch


def _per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example vector [N] to broadcast against a batch [N, ...]."""
    return v.view(-1, *([1] * (like.ndim - 1)))


# ---------------------------------------------------------------------------------------------------------------
# Threat models


class Threat:
    """An eps-ball around the clean input, intersected with the [0, 1] box."""

    name = "?"

    def __init__(self, eps: float):
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
            raise ValueError(f"{type(self).__name__}: eps must be a finite number >= 0, got {eps!r}")
        self.eps = float(eps)

    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-example size of a perturbation in this threat's norm."""
        raise NotImplementedError

    def ascent(self, grad: torch.Tensor) -> torch.Tensor:
        """The unit-norm direction that increases a linear function with gradient `grad` the most, as a new tensor
        (the loop writes its step and projection into it: two buffers less per step)."""
        raise NotImplementedError

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A point of ball(x, eps) ∩ [0, 1]^d near x_adv."""
        raise NotImplementedError

    def random_start(self, x: torch.Tensor) -> torch.Tensor:
        """A random point of ball(x, eps) ∩ [0, 1]^d."""
        raise NotImplementedError

    def projector(self, x: torch.Tensor):
        """`project` onto the ball around this `x`, as a function of x_adv alone: the loop calls it every step, so a
        norm can compute what depends only on x once. The function may write its result into `out` (x_adv's
        buffer, when the loop owns it) and return it."""
        return lambda x_adv, out=None: self.project(x_adv, x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps:g})"


class Linf(Threat):
    name = "linf"

    def norm(self, delta):
        return delta.flatten(1).abs().amax(1)

    def ascent(self, grad):
        return grad.sign()

    def project(self, x_adv, x):
        # the L-inf ball is a box, so clipping to both boxes is the exact Euclidean projection
        return torch.minimum(torch.maximum(x_adv, x - self.eps), x + self.eps).clamp_(0, 1)

    def random_start(self, x):
        return (x + torch.empty_like(x).uniform_(-self.eps, self.eps)).clamp_(0, 1)

    def projector(self, x):
        # ball ∩ box is the box [max(x - eps, 0), min(x + eps, 1)]: one clamp a step, the same values as `project`
        lo, hi = (x - self.eps).clamp_(min=0), (x + self.eps).clamp_(max=1)
        return lambda x_adv, out=None: torch.clamp(x_adv, lo, hi, out=out)


class L2(Threat):
    name = "l2"

    def norm(self, delta):
        return delta.flatten(1).norm(dim=1)

    def ascent(self, grad):
        return grad / _per_example(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)

    def project(self, x_adv, x):
        # Scale onto the ball, then clip to the box. Clipping only moves coordinates towards x (which is in the box),
        # so the result stays inside the ball: feasible, though not the exact projection onto the intersection.
        d = x_adv - x
        scale = (self.eps / d.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
        return (x + d * _per_example(scale, d)).clamp_(0, 1)

    def random_start(self, x):
        # uniform in the ball: a uniform direction times eps * U^(1/d) (not on the sphere, not a clipped Gaussian)
        u = torch.randn_like(x)
        u = u / _per_example(u.flatten(1).norm(dim=1).clamp_min(1e-12), u)
        r = self.eps * torch.rand(len(x), device=x.device) ** (1.0 / x[0].numel())
        return self.project(x + u * _per_example(r, x), x)


THREATS: dict[str, type[Threat]] = {"linf": Linf, "l2": L2}


def threat(norm: str, eps: float) -> Threat:
    if norm not in THREATS:
        raise ValueError(f"unknown norm '{norm}', expected one of {sorted(THREATS)}")
    return THREATS[norm](eps)

