"""Figures drawn from tensors (the report draws the rest from tables): grids of original / adversarial images.

Perturbations are shown magnified around mid-grey, so a reader sees their structure, with the factor printed.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .store import atomic  # noqa: E402


def _show(ax, img: torch.Tensor, title: str) -> None:
    img = img.detach().float().cpu().clamp(0, 1)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0))
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def example_grid(x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, model,
                 path: str | Path, title: str, classes: tuple[str, ...] | None = None, dpi: int = 110) -> None:
    """Three rows: originals (true label, model's prediction), adversarial (prediction), perturbation magnified."""
    n = len(x)
    with torch.no_grad():
        was = model.training
        model.eval()
        p_clean, p_adv = model(x).argmax(1), model(x_adv).argmax(1)
        model.train(was)
    name = (lambda i: classes[i]) if classes else str
    r = x_adv - x
    mag = 0.5 / max(r.abs().max().item(), 1e-8)
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.4), squeeze=False)
    for i in range(n):
        _show(axes[0, i], x[i], f"{name(int(y[i]))} -> {name(int(p_clean[i]))}")
        tgt = f" (t={name(int(target[i]))})" if target is not None else ""
        _show(axes[1, i], x_adv[i], f"-> {name(int(p_adv[i]))}{tgt}")
        _show(axes[2, i], 0.5 + mag * r[i], f"|r|rms {r[i].pow(2).mean().sqrt().item():.3f}")
    axes[0, 0].text(-0.3, 0.5, "original\n(label -> pred)", transform=axes[0, 0].transAxes, ha="right",
                    va="center", fontsize=8)
    axes[1, 0].text(-0.3, 0.5, "adversarial\n(pred)", transform=axes[1, 0].transAxes, ha="right", va="center",
                    fontsize=8)
    axes[2, 0].text(-0.3, 0.5, f"perturbation\nx{mag:.0f}", transform=axes[2, 0].transAxes, ha="right",
                    va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    with atomic(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
