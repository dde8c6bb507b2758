"""Transfer: Szegedy et al.'s cross-model and cross-training-set experiment (MNIST halves P1 and P2).

Adversarial examples made for one model are fed to others; the table of error rates shows how far they transfer.
Baselines put the numbers in scale: the same perturbation rescaled to a fixed distortion ("amplified"), and
Gaussian noise of the same distortion, which a model shrugs off.
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn as nn

from .attacks import eval_mode, rms


def halves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split range(n) into two seeded random halves P1, P2 (sorted indices)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n // 2].sort().values, perm[n // 2:].sort().values


def amplify(x: torch.Tensor, x_adv: torch.Tensor, distortion: float) -> torch.Tensor:
    """Rescale each perturbation to RMS `distortion` (Szegedy's "amplified" examples), then clip to the box."""
    r = x_adv - x
    scale = distortion / rms(r).clamp_min(1e-12)
    return (x + r * scale.view(-1, *([1] * (x.ndim - 1)))).clamp(0, 1)


def gaussian(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """x plus N(0, std^2) noise per pixel, clipped to [0, 1]; the RMS distortion is then about std."""
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g).to(x.device)).clamp(0, 1)


@torch.no_grad()
def error_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    with eval_mode(model):
        wrong = sum((model(x[i:i + batch_size]).argmax(1) != y[i:i + batch_size]).sum().item()
                    for i in range(0, len(x), batch_size))
    return wrong / max(len(x), 1)


def error_matrix(models: dict[str, nn.Module], rows: dict[str, torch.Tensor], y: torch.Tensor) -> pd.DataFrame:
    """Error rate (w.r.t. the true labels y) of every model (columns) on every set of inputs (rows)."""
    return pd.DataFrame({name: [error_rate(m, x, y) for x in rows.values()] for name, m in models.items()},
                        index=list(rows))


def other_labels(y: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded random target label different from y, per example."""
    g = torch.Generator().manual_seed(seed)
    return (y + torch.randint(1, 10, y.shape, generator=g).to(y.device)) % 10
