"""Attacks: one loop over pluggable threat models, the attacks built from it, and the tools for adaptive attacks.

    threats    the norm as a unit: random start, steepest-ascent step, projection onto ball ∩ box, size
    loop       the one attack loop (`pgd`), FGSM, losses, eval mode, results
    lbfgs      Szegedy et al.'s box-constrained L-BFGS, batched
    adaptive   BPDA, EOT and the gradient-free oracle, which plug into the loop; Tramer et al.'s attack
    autoattack the reference evaluation (Croce & Hein's code) and torchattacks' lighter port

Everything a caller needs is re-exported here: `from advrep import attacks as A; A.pgd(model, x, y, A.Linf(8/255),
20, 2/255)`. Inputs are pixels in [0, 1]; every attack runs the model in eval mode and restores it.
"""
from .adaptive import BPDA, EOT, GradientFree, gradient_free, with_bpda
from .autoattack import autoattack, autoattack_lite, standard_autoattack
from .lbfgs import box_lbfgs, lbfgs, rms
from .loop import (Anchored, GradFn, Result, autograd_oracle, batched, by_anchor, couples_batch, coupled_through_first,
                   eval_mode, fast_layout, fgsm, margin, objective, pgd, succeeded)
from .threats import THREATS, L2, Linf, Threat, threat

__all__ = ["BPDA", "EOT", "GradientFree", "gradient_free", "with_bpda", "autoattack", "autoattack_lite",
           "standard_autoattack", "box_lbfgs", "lbfgs", "rms", "Anchored", "GradFn", "Result", "autograd_oracle",
           "batched", "by_anchor", "couples_batch", "coupled_through_first", "eval_mode", "fast_layout", "fgsm",
           "margin", "objective", "pgd", "succeeded", "THREATS", "L2", "Linf", "Threat", "threat"]
