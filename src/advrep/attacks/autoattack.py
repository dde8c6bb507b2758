"""AutoAttack (Croce & Hein 2020), the reference evaluation, and the lighter variant some code calls by its name.

`autoattack` is the standard version from Croce & Hein's own code (the `pyautoattack` package): APGD-CE and APGD-T
(9 target classes) with 100 iterations each, FAB-T (9 targets, 100 iterations) and Square with 5,000 queries, each
run on the examples the previous ones left robust; the worst case per example. `standard_autoattack` builds it and
`tests/test_attacks.py` checks those counts, so a change of package cannot weaken it silently.

`autoattack_lite` is torchattacks' `AutoAttack(version="standard")`, which builds the same four attacks with 10
iterations: a weaker attack, reported under the name "AutoAttack-lite (torchattacks, 10 it.)" and kept only to
cross-check the two on the same images.

`parts` runs a subset of the standard four (APGD-CE and APGD-T, say), each at its standard settings: a lighter
attack than AutoAttack, which a config must name by its parts (config.AttackConfig refuses "AutoAttack" for it).
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
import torch.nn as nn

from .loop import by_anchor, couples_batch, coupled_through_first, eval_mode, fast_layout

STANDARD = {"attacks": ["apgd-ce", "apgd-t", "fab-t", "square"], "apgd_iter": 100, "apgd_t_iter": 100,
            "apgd_t_targets": 9, "fab_iter": 100, "fab_targets": 9, "square_queries": 5000}
NORMS = {"linf": "Linf", "l2": "L2"}
PART_NAMES = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "fab-t": "FAB-T", "square": "Square"}  # STANDARD's order


def standard_autoattack(model: nn.Module, eps: float, norm: str = "linf", seed: int = 0):
    """pyautoattack's AutoAttack in its standard version, on the model's device."""
    from pyautoattack import AutoAttack

    logging.getLogger("auto-attack").setLevel(logging.WARNING)  # its per-batch debug lines would flood the logs
    device = next(model.parameters()).device
    aa = AutoAttack(model, norm=NORMS[norm], eps=eps, version="standard", seed=seed, device=device)
    aa.verbose = False
    return aa


def counts(aa) -> dict:
    """What an AutoAttack object will run, in the terms of STANDARD (for the check that it is the standard one)."""
    return {"attacks": list(aa.attacks_to_run), "apgd_iter": aa.apgd.n_iter, "apgd_t_iter": aa.apgd_targeted.n_iter,
            "apgd_t_targets": aa.apgd_targeted.n_target_classes, "fab_iter": aa.fab.n_iter,
            "fab_targets": aa.fab.n_target_classes, "square_queries": aa.square.n_queries}


class _ChannelsLast(nn.Module):
    """The model run in channels-last layout on plain (NCHW-contiguous) inputs: ~1.5x faster convolutions on this
    CPU, while the gradients pyautoattack reshapes with .view stay contiguous. Values are unchanged."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x)


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf",
               seed: int = 0, batch_size: int = 500, parts: Optional[Sequence[str]] = None) -> torch.Tensor:
    """Standard AutoAttack on the model in eval mode; returns the adversarial examples (x where it failed). With
    `parts`, only those of its four attacks, in its order, each as the standard version runs it.
    A model coupled through its batch's first example is attacked as it is scored, with x the scoring batch: the
    first example alone (a batch of one is its own anchor), then the rest with that example's result in front."""
    unknown = sorted(set(parts or ()) - set(STANDARD["attacks"]))
    if unknown or (parts is not None and not parts):
        raise ValueError(f"AutoAttack parts: expected a non-empty subset of {STANDARD['attacks']}, got {parts}")
    if len(x) == 1 or not couples_batch(model):
        return _run(model, x, y, eps, norm, seed, batch_size, parts)
    if not coupled_through_first(model):
        raise ValueError("AutoAttack attacks sub-batches: a model coupled through its whole batch is another function "
                         "in each, and only coupling through the first example can be held fixed")
    return by_anchor(_run, model, x, y, eps, norm, seed, batch_size, parts)


def _run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, seed: int,
         batch_size: int, parts: Optional[Sequence[str]] = None) -> torch.Tensor:
    convs = any(isinstance(m, nn.Conv2d) for m in model.modules())
    with eval_mode(model), fast_layout(model, x) as _:
        aa = standard_autoattack(_ChannelsLast(model) if convs else model, eps, norm, seed)
        got = counts(aa)
        if got != STANDARD:  # a package update that changes the standard version must not pass unnoticed
            raise RuntimeError(f"pyautoattack's standard AutoAttack is not the reference one: {got} != {STANDARD}")
        if parts is not None:
            aa.attacks_to_run = [a for a in STANDARD["attacks"] if a in parts]
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return x_adv.detach()


def autoattack_lite(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf",
                    seed: int = 0) -> torch.Tensor:
    """torchattacks' AutoAttack(version='standard'): the same four attacks with 10 iterations (weaker)."""
    import torchattacks

    with eval_mode(model):
        aa = torchattacks.AutoAttack(model, norm=NORMS[norm], eps=eps, version="standard", n_classes=10, seed=seed)
        return aa(x, y).detach()
