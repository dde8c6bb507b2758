"""Attacks: one loop over pluggable threat models, with FGSM, PGD and L-BFGS, and the tools for adaptive attacks.

A threat model (`Linf`, `L2`) knows its norm: a random start inside the eps-ball, the steepest-ascent direction
for that norm, the projection back onto the ball intersected with the [0, 1] pixel box, and how to measure a
perturbation. `pgd` is the single attack loop; FGSM (Goodfellow et al.) is one unprojected signed step, PGD (Madry
et al.) is many projected steps from a random start, and L2 PGD takes normalised gradient steps (Ilyas et al.).

Adaptive attacks plug into the same loop: `BPDA` swaps a module's backward pass for a smooth surrogate's, `EOT`
averages a randomised model, `GradientFree` replaces the gradient by an antithetic Gaussian estimate of a margin
loss (Tramer et al. 2020 against k-WTA). A transferred attack runs the loop on a surrogate model.

Every attack runs the model in eval mode and puts it back the way it found it. Inputs are pixels in [0, 1].
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

# A gradient oracle: (x_adv, labels) -> (d objective / d x_adv, logits at x_adv). The objective is to be ascended.
GradFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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
        """The unit-norm direction that increases a linear function with gradient `grad` the most."""
        raise NotImplementedError

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A point of ball(x, eps) ∩ [0, 1]^d near x_adv."""
        raise NotImplementedError

    def random_start(self, x: torch.Tensor) -> torch.Tensor:
        """A random point of ball(x, eps) ∩ [0, 1]^d."""
        raise NotImplementedError

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


# ---------------------------------------------------------------------------------------------------------------
# Losses (all returned per example, to be ascended by the attacker)


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z_label - max_{j != label} z_j: positive when `labels` wins."""
    z = logits.float()
    own = z.gather(1, labels[:, None]).squeeze(1)
    other = z.masked_fill(F.one_hot(labels, z.shape[1]).bool(), float("-inf")).amax(1)
    return own - other


def objective(logits: torch.Tensor, labels: torch.Tensor, loss: str, targeted: bool) -> torch.Tensor:
    """What the attacker ascends. Untargeted: move away from the true label; targeted: towards the target."""
    if loss == "ce":
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        return -ce if targeted else ce
    if loss == "margin":  # Carlini & Wagner's margin loss, without the confidence clip
        m = margin(logits, labels)
        return m if targeted else -m
    raise ValueError(f"unknown loss '{loss}', expected 'ce' or 'margin'")


def succeeded(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    pred = logits.argmax(1)
    return pred == labels if targeted else pred != labels


# ---------------------------------------------------------------------------------------------------------------
# The loop


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode (BatchNorm uses running statistics) with frozen parameters, and restore both after.

    Freezing guarantees that no attack, nor a gradient oracle that calls backward(), leaves gradients in the
    model's .grad fields (which an optimizer stepping after the attack would apply). It does not make the attack
    faster: torch.autograd.grad already skips weight gradients it was not asked for.
    """
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in grads:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)


@contextlib.contextmanager
def fast_layout(model: nn.Module, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """Run a conv net on image batches in channels-last layout (oneDNN and tensor-core kernels are faster in it:
    ~1.3x per attack step on a 2-core CPU) and restore the model's own layout after. Values are unchanged."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if x.ndim != 4 or not convs:
        yield x
        return
    was_cl = convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    model.to(memory_format=torch.channels_last)
    try:
        yield x.contiguous(memory_format=torch.channels_last)
    finally:
        if not was_cl:
            model.to(memory_format=torch.contiguous_format)


def autograd_oracle(model: nn.Module, loss: str, targeted: bool) -> GradFn:
    def grad(x_adv, labels):
        x_adv = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x_adv)
            g, = torch.autograd.grad(objective(logits, labels, loss, targeted).sum(), x_adv)
        return g, logits.detach()
    return grad


@dataclass
class Result:
    """Adversarial examples with, per example, whether the attack succeeded and the distortion it used."""

    x: torch.Tensor
    success: torch.Tensor  # bool [N]: misclassified (untargeted) or classified as the target (targeted)
    distortion: torch.Tensor  # [N] norm of x_adv - x in the threat's norm
    logits: torch.Tensor  # [N, C] at x_adv

    @classmethod
    def cat(cls, parts: list["Result"]) -> "Result":
        """Join the results of consecutive batches."""
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in ("x", "success", "distortion", "logits")))


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Threat, steps: int, step_size: float, *,
        target: Optional[torch.Tensor] = None, restarts: int = 1, random_start: bool = True, loss: str = "ce",
        early_stop: bool = False, grad: Optional[GradFn] = None) -> Result:
    """Projected gradient ascent on `objective` inside `threat`'s ball: the one attack loop.

    target: None for an untargeted attack (leave the label y), else the labels to reach.
    restarts: independent runs (from fresh random starts); per example the strongest result is kept, a success
      before a failure, then the higher objective. Restarts after the first attack only the examples not yet broken.
    early_stop: an example that succeeds is frozen there (cheaper; the perturbation stays small). Off, every
      example takes all `steps` steps (as Ilyas et al. do when building their datasets).
    grad: a gradient oracle (BPDA, EOT and gradient-free estimates plug in here); default: autograd on `model`.
    """
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
    targeted = target is not None
    labels = (target if targeted else y).to(x.device)
    with eval_mode(model), fast_layout(model, x.detach()) as x:
        oracle = grad or autograd_oracle(model, loss, targeted)
        best_x, best_ok = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        best_obj = torch.full((len(x),), float("-inf"), device=x.device)
        best_logits = None
        todo = torch.arange(len(x), device=x.device)
        for _ in range(restarts):
            xs, ls = x[todo], labels[todo]
            xa = threat.random_start(xs) if random_start else xs.clone()
            live = None  # None: every row is still updated (no indexing cost); else the rows still updated
            for _ in range(steps):
                if live is None:
                    g, logits = oracle(xa, ls)
                    if early_stop:
                        live = (~succeeded(logits, ls, targeted)).nonzero().squeeze(1)
                        g = g[live]
                else:
                    g, logits = oracle(xa[live], ls[live])
                    keep = ~succeeded(logits, ls[live], targeted)
                    live, g = live[keep], g[keep]
                if live is None:
                    xa = threat.project(xa + step_size * threat.ascent(g), xs)
                elif len(live):
                    xa[live] = threat.project(xa[live] + step_size * threat.ascent(g), xs[live])
                else:
                    break
            with torch.no_grad():
                logits = model(xa)
            ok = succeeded(logits, ls, targeted)
            obj = objective(logits, ls, loss, targeted)
            better = (ok & ~best_ok[todo]) | ((ok == best_ok[todo]) & (obj > best_obj[todo]))
            rows = todo[better]
            best_x[rows], best_ok[rows], best_obj[rows] = xa[better], ok[better], obj[better]
            if best_logits is None:
                best_logits = torch.zeros(len(x), logits.shape[1], device=x.device)
            best_logits[rows] = logits[better]
            todo = todo[~best_ok[todo]]
            if len(todo) == 0:
                break
    return Result(best_x, best_ok, threat.norm(best_x - x), best_logits)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, target: Optional[torch.Tensor] = None,
         loss: str = "ce") -> Result:
    """Goodfellow et al.: x + eps * sign(grad_x J(x, y)); targeted: x - eps * sign(grad_x J(x, t))."""
    return pgd(model, x, y, Linf(eps), steps=1, step_size=eps, target=target, random_start=False, loss=loss)


def batched(attack: Callable[..., Result], model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
            target: Optional[torch.Tensor] = None, **kw) -> Result:
    """Run `attack` over `x` in batches (memory), concatenating the results."""
    parts = []
    for i in range(0, len(x), batch_size):
        t = None if target is None else target[i:i + batch_size]
        parts.append(attack(model, x[i:i + batch_size], y[i:i + batch_size], target=t, **kw))
    return Result.cat(parts)


# ---------------------------------------------------------------------------------------------------------------
# Box-constrained L-BFGS (Szegedy et al. 2014)


def rms(delta: torch.Tensor) -> torch.Tensor:
    """Szegedy's distortion: sqrt(mean(r^2)) over the pixels of each example, pixels in [0, 1]."""
    return delta.flatten(1).pow(2).mean(1).sqrt()


def box_lbfgs(fun: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]], r0: torch.Tensor,
              lo: torch.Tensor, hi: torch.Tensor, max_iter: int = 100, history: int = 10,
              tol: float = 1e-6) -> torch.Tensor:
    """Minimise N independent objectives over boxes lo <= r <= hi by projected L-BFGS, batched.

    fun(r, rows) returns the objectives f [n] and gradients [n, d] of the rows `rows` at r [n, d]. Every row keeps
    its own curvature history, initial scaling and backtracking (Armijo) line search, so rows never slow each
    other down (one joint L-BFGS-B call over the concatenated batch does: its shared curvature estimate and
    stopping test let hard rows stall). Variables at a bound whose gradient points outwards are held fixed; the
    step is projected onto the box. A row stops when a step no longer decreases its objective by a relative `tol`.
    """
    n, d = r0.shape
    r = r0.clone()
    everyone = torch.arange(n, device=r.device)
    f, g = fun(r, everyone)
    S, Y = r.new_zeros(history, n, d), r.new_zeros(history, n, d)
    rho = r.new_zeros(history, n)  # 0 marks an empty or skipped slot: it then drops out of the recursion
    gamma = 0.1 / g.norm(dim=1).clamp_min(1e-12)  # first step: length 0.1 along -g
    live = torch.ones(n, dtype=torch.bool, device=r.device)
    for it in range(max_iter):
        rows = live.nonzero().squeeze(1)
        if len(rows) == 0:
            break
        x, gr = r[rows], g[rows]
        out = ((x <= lo[rows]) & (gr > 0)) | ((x >= hi[rows]) & (gr < 0))  # wants to leave the box: fixed
        q = gr.masked_fill(out, 0.0)
        order = [(it - 1 - j) % history for j in range(min(it, history))]  # newest first
        alphas = []
        for j in order:
            a_j = rho[j, rows] * (S[j, rows] * q).sum(1)
            q = q - a_j[:, None] * Y[j, rows]
            alphas.append(a_j)
        z = gamma[rows, None] * q
        for j, a_j in zip(reversed(order), reversed(alphas)):
            b_j = rho[j, rows] * (Y[j, rows] * z).sum(1)
            z = z + S[j, rows] * (a_j - b_j)[:, None]
        p = (-z).masked_fill(out, 0.0)
        slope = (gr * p).sum(1)
        bad = slope >= 0  # not a descent direction: fall back to scaled steepest descent
        p[bad] = -(gamma[rows][bad, None] * gr[bad]).masked_fill(out[bad], 0.0)
        # backtracking line search, per row
        step = torch.ones(len(rows), device=r.device)
        new_r, new_f, new_g = x.clone(), f[rows].clone(), gr.clone()
        pending = torch.arange(len(rows), device=r.device)
        for _ in range(20):
            cand = torch.maximum(torch.minimum(x[pending] + step[pending, None] * p[pending], hi[rows[pending]]),
                                 lo[rows[pending]])
            fc, gc = fun(cand, rows[pending])
            ok = fc <= f[rows[pending]] + 1e-4 * (gr[pending] * (cand - x[pending])).sum(1)
            acc = pending[ok]
            new_r[acc], new_f[acc], new_g[acc] = cand[ok], fc[ok], gc[ok]
            step[pending[~ok]] *= 0.5
            pending = pending[~ok]
            if len(pending) == 0:
                break
        moved = torch.ones(len(rows), dtype=torch.bool, device=r.device)
        moved[pending] = False
        s_, y_ = new_r - x, new_g - gr
        sy = (s_ * y_).sum(1)
        slot = it % history
        keep = moved & (sy > 1e-10)
        S[slot, rows], Y[slot, rows] = s_, y_
        rho[slot, rows] = torch.where(keep, 1.0 / sy.clamp_min(1e-10), torch.zeros_like(sy))
        gamma[rows] = torch.where(keep, sy / (y_ * y_).sum(1).clamp_min(1e-20), gamma[rows])
        done = ~moved | ((f[rows] - new_f).abs() <= tol * f[rows].abs().clamp_min(1e-3))
        r[rows], f[rows], g[rows] = new_r, new_f, new_g
        live[rows[done]] = False
    return r


def lbfgs(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, c_init: float = 1.0, search_steps: int = 10,
          max_iter: int = 100) -> Result:
    """Minimal-distortion targeted examples by box-constrained L-BFGS (Szegedy et al. 2014), batched.

    For each example, minimise  c * ||r||_2^2 + CE(model(x + r), target)  subject to  x + r in [0, 1]^d
    (`box_lbfgs`). We use the squared norm (smooth, as Carlini & Wagner do) rather than the paper's |r|; the search
    over c makes the two agree on the minimiser's distortion up to the search's resolution. Per example, c is
    searched (by factors of 10 until bracketed, then bisection in log space) for the largest c whose minimiser
    still reaches the target: the smallest distortion that works.

    Returns the smallest successful perturbation per example (the unperturbed x where none was found);
    Result.distortion is Szegedy's RMS distortion `rms`.
    """
    x = x.detach()
    target = target.to(x.device)
    n, shape = len(x), x.shape
    flat = x.flatten(1)
    ok_c = torch.zeros(n, dtype=torch.float64, device=x.device)  # largest c whose minimiser reached the target
    fail_c = torch.full((n,), math.inf, dtype=torch.float64, device=x.device)  # smallest c whose minimiser did not
    c = torch.full((n,), float(c_init), dtype=torch.float64, device=x.device)
    best_x, best_d = x.clone(), torch.full((n,), math.inf, device=x.device)
    with eval_mode(model):
        for _ in range(search_steps):
            cw = c.float()

            def fun(r, rows):
                r = r.detach().requires_grad_(True)
                with torch.enable_grad():
                    logits = model((flat[rows] + r).view(-1, *shape[1:]))
                    f = cw[rows] * r.pow(2).sum(1) + F.cross_entropy(logits, target[rows], reduction="none")
                    g, = torch.autograd.grad(f.sum(), r)
                return f.detach(), g

            r = box_lbfgs(fun, torch.zeros_like(flat), -flat, 1.0 - flat, max_iter=max_iter)
            x_adv = (flat + r).clamp(0, 1).view(shape)
            with torch.no_grad():
                ok = model(x_adv).argmax(1) == target
            d = rms(x_adv - x)
            improve = ok & (d < best_d)
            best_x[improve], best_d[improve] = x_adv[improve], d[improve]
            # success: penalise distortion harder (c up); failure: ease off (c down); once both ends are known,
            # bisect between them in log space
            ok_c = torch.where(ok, torch.maximum(ok_c, c), ok_c)
            fail_c = torch.where(ok, fail_c, torch.minimum(fail_c, c))
            bracketed = (ok_c > 0) & torch.isfinite(fail_c)
            c = torch.where(bracketed, (ok_c * fail_c).sqrt(), torch.where(ok, c * 10, c / 10))
        with torch.no_grad():
            logits = model(best_x)
    return Result(best_x, logits.argmax(1) == target, rms(best_x - x), logits)


# ---------------------------------------------------------------------------------------------------------------
# Tools for adaptive attacks


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
