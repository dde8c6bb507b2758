"""The experiments, one module each: its params schema, its computation and its report section, in the pipeline's
order (by paper, oldest first, after the clean source models they attack).

    clean        train_mnist, train_cifar: the source models
    szegedy      Szegedy et al. 2014: L-BFGS, transfer between MNIST nets trained on halves P1 / P2
    goodfellow   Goodfellow et al. 2015: FGSM and FGSM adversarial training
    robustness   Madry et al. 2018 / Carlini et al. 2019: the attack library checked on the clean models
    nonrobust    Ilyas et al. 2019: non-robust features, D_det and D_rand (nrf_generate, nrf_train)
    kwta         Xiao et al. 2020: k-WTA, and the adaptive attacks that break it (Tramer et al. 2020)
    sat          Xie et al. 2020: Smooth Adversarial Training

A reader goes dvc.yaml -> stages/<name>.py -> experiments/<name>.py and finds the whole experiment. Importing this
package imports none of them (a stage imports only its own experiment, so editing one experiment re-runs only its
stages); `modules()` imports them all, for the report and the profile checks.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

ORDER = ("clean", "szegedy", "goodfellow", "robustness", "nonrobust", "kwta", "sat")


def modules() -> list[ModuleType]:
    """Every experiment module, in order."""
    return [importlib.import_module(f"{__name__}.{name}") for name in ORDER]


def schemas() -> dict:
    """Section of params.yaml -> its schema, for every stage (the report's included)."""
    from .. import report

    return {s: schema for m in (*modules(), report) for s, schema in m.SECTIONS.items()}
