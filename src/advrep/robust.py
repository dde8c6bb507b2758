"""Robust training objectives: the batch losses that adversarial training plugs into train.fit.

Each returns `objective(model, x, y) -> loss`. The attack inside runs the model in eval mode (BatchNorm with its
running statistics, parameters frozen) and puts it back in train mode for the loss, as attacks.pgd always does.
"""
from __future__ import annotations

import torch.nn.functional as F

from . import attacks as A


def fgsm_objective(eps: float, alpha: float = 0.5):
    """Goodfellow et al. 2015: J~ = alpha * J(x, y) + (1 - alpha) * J(x + eps sign(grad_x J), y)."""
    def objective(model, x, y):
        x_adv = A.fgsm(model, x, y, eps).x
        return alpha * F.cross_entropy(model(x), y) + (1 - alpha) * F.cross_entropy(model(x_adv), y)
    return objective


def pgd_objective(threat: A.Threat, steps: int, step_size: float, random_start: bool = True):
    """Madry et al. 2018: J(x + delta*, y) with delta* from PGD; steps=1 with a random start is the single-step
    attacker of Wong et al. 2020 and Xie et al.'s SAT."""
    def objective(model, x, y):
        x_adv = A.pgd(model, x, y, threat, steps, step_size, random_start=random_start).x
        return F.cross_entropy(model(x_adv), y)
    return objective
