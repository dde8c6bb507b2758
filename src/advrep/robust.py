"""Robust training: the batch losses that adversarial training plugs into train.fit, and its overfitting monitor.

Each objective returns `objective(model, x, y) -> loss`. The attack inside runs the model in eval mode (BatchNorm
with its running statistics, parameters frozen) and puts it back in train mode for the loss, as attacks.pgd always
does.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attacks as A
from .models import smooth_backward
from .store import tensor_hash


def describe(fn, **spec):
    """Attach what defines an objective or hook (its kind and params) as `fn.spec`: training keys its checkpoints
    by it, so runs that differ only in, say, the attacker's eps never resume each other."""
    fn.spec = spec
    return fn


def fgsm_objective(eps: float, alpha: float = 0.5, label_smoothing: float = 0.0):
    """Goodfellow et al. 2015: J~ = alpha * J(x, y) + (1 - alpha) * J(x + eps sign(grad_x J), y)."""
    def objective(model, x, y):
        x_adv = A.fgsm(model, x, y, eps).x
        return (alpha * F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
                + (1 - alpha) * F.cross_entropy(model(x_adv), y, label_smoothing=label_smoothing))
    return describe(objective, kind="fgsm", eps=eps, alpha=alpha, label_smoothing=label_smoothing)


def _switch(model: nn.Module, on: bool | None):
    return contextlib.nullcontext() if on is None else smooth_backward(model, on)


def pgd_objective(threat: A.Threat, steps: int, step_size: float, random_start: bool = True,
                  attacker_smooth: bool | None = None, optimizer_smooth: bool | None = None,
                  label_smoothing: float = 0.0):
    """Madry et al. 2018: J(x + delta*, y) with delta* from PGD; steps=1 with a random start is the single-step
    attacker of Wong et al. 2020 and Xie et al.'s SAT.

    attacker_smooth / optimizer_smooth: for models with `SwitchableReLU` activations, whether the attacker's
    gradient (inner maximisation) and the weights' gradient (outer minimisation) pass through ReLU's step or
    through parametric softplus's smooth derivative (Xie et al.'s ablation). None leaves the model as it is.
    The switch acts on the forward pass that records the graph, so it holds for the backward pass that follows.
    label_smoothing: of the training loss on the adversarial examples (the attacker ascends plain cross-entropy).
    """
    def objective(model, x, y):
        with _switch(model, attacker_smooth):
            x_adv = A.pgd(model, x, y, threat, steps, step_size, random_start=random_start).x
        with _switch(model, optimizer_smooth):
            return F.cross_entropy(model(x_adv), y, label_smoothing=label_smoothing)
    return describe(objective, kind="pgd", norm=threat.name, eps=threat.eps, steps=steps, step_size=step_size,
                    random_start=random_start, attacker_smooth=attacker_smooth, optimizer_smooth=optimizer_smooth,
                    label_smoothing=label_smoothing)


def overfit_monitor(x: torch.Tensor, y: torch.Tensor, threat: A.Threat, steps: int, step_ratio: float = 2.5):
    """An `on_epoch` hook for train.fit: clean and multi-step PGD accuracy of a fixed held-out batch after every
    epoch. Catastrophic overfitting (Wong et al. 2020) shows as PGD accuracy collapsing while training goes on."""
    def on_epoch(epoch: int, model: nn.Module) -> dict:
        dev = next(model.parameters()).device
        xb, yb = x.to(dev), y.to(dev)
        with A.eval_mode(model), torch.no_grad():
            clean = (model(xb).argmax(1) == yb).float().mean().item()
        r = A.pgd(model, xb, yb, threat, steps, step_ratio * threat.eps / steps)
        return {"monitor_clean_acc": clean, "monitor_pgd_acc": 1 - r.success.float().mean().item()}
    return describe(on_epoch, kind="overfit_monitor", data=tensor_hash(x, y), norm=threat.name, eps=threat.eps,
                    steps=steps, step_ratio=step_ratio)


def catastrophic_overfitting(pgd_acc: list[float], drop: float = 0.5, floor: float = 0.05) -> int | None:
    """The first epoch (1-based) at which the monitor's PGD accuracy fell below `drop` times its best so far (once
    that best is above `floor`), or None. A fall to under half the best, mid-training, is the signature."""
    best = 0.0
    for i, a in enumerate(pgd_acc):
        if best > floor and a < drop * best:
            return i + 1
        best = max(best, a)
    return None
