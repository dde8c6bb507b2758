"""Attacks: one loop over pluggable threat models, the attacks built from it, and the tools for adaptive attacks.

    threats    the norm as a unit: random start, steepest-ascent step, projection onto ball ∩ box, size
    loop       the one attack loop (`pgd`), FGSM, losses, eval mode, results
    lbfgs      Szegedy et al.'s box-constrained L-BFGS, batched
    adaptive   BPDA, EOT and the gradient-free oracle, which plug into the loop

Everything a caller needs is re-exported here: `from advrep import attacks as A; A.pgd(model, x, y, A.Linf(8/255),
20, 2/255)`. Inputs are pixels in [0, 1]; every attack runs the model in eval mode and restores it.
"""
from .adaptive import BPDA, EOT, GradientFree, with_bpda
from .lbfgs import box_lbfgs, lbfgs, rms
from .loop import (GradFn, Result, autograd_oracle, batched, eval_mode, fast_layout, fgsm, margin, objective, pgd,
                   succeeded)
from .threats import THREATS, L2, Linf, Threat, threat

__all__ = ["BPDA", "EOT", "GradientFree", "with_bpda", "box_lbfgs", "lbfgs", "rms", "GradFn", "Result",
           "autograd_oracle", "batched", "eval_mode", "fast_layout", "fgsm", "margin", "objective", "pgd",
           "succeeded", "THREATS", "L2", "Linf", "Threat", "threat"]
