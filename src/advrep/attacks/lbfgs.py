"""Box-constrained L-BFGS (Szegedy et al. 2014): minimal-distortion targeted examples, batched per example."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .loop import Result, eval_mode

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
