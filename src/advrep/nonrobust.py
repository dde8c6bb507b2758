"""Non-robust datasets (Ilyas et al. 2019): relabel training images and push each towards its new label with a
small targeted L2 PGD perturbation against a source model, so that only the perturbation (a "non-robust feature")
agrees with the new label.

D_det uses t = (y + 1) mod 10, D_rand a seeded uniform draw over the other nine classes. A dataset is stored as the
perturbation itself (float16: an L2 eps of 0.5 spreads ~0.009 per pixel, which uint8 would round away and float16
keeps to ~1e-5), with the canonical indices of the source images, the new and the original labels; `images` adds the
perturbation back to the verified raw images. Generation is chunked and resumable: finished chunks are kept on
disk under a key of everything that defines them, and a restarted run skips them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from . import attacks as A
from .data import Split
from .store import logger, save_npz
from .transfer import other_labels

log = logger("nonrobust")


def targets(y: torch.Tensor, mode: str, seed: int = 0) -> torch.Tensor:
    """New labels: 'det' is (y + 1) mod 10; 'rand' is uniform over the nine classes other than y (seeded)."""
    if mode == "det":
        return (y + 1) % 10
    if mode == "rand":
        return other_labels(y, seed)
    raise ValueError(f"unknown relabelling '{mode}', expected 'det' or 'rand'")


def generate(model: nn.Module, data: Split, target: torch.Tensor, threat: A.Threat, steps: int, step: float,
             batch_size: int, workdir: Path, chunk: int, key: str, device: torch.device,
             desc: str = "generate") -> tuple[torch.Tensor, torch.Tensor]:
    """Targeted PGD towards `target` for every image (all steps, no early stop: Ilyas et al.'s setting, which
    keeps strengthening the target's features after the label flips). Returns (delta as float32, success), where
    success says whether the source model classifies x + delta as the target.

    Chunks of `chunk` images are written to `workdir` as they finish; a chunk whose stored key matches is loaded
    instead of recomputed, so a stopped run continues where it stopped.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    deltas, oks = [], []
    n_chunks = (len(data) + chunk - 1) // chunk
    bar = tqdm(total=len(data), desc=desc, leave=False, disable=None, mininterval=2.0)
    for c in range(n_chunks):
        lo, hi = c * chunk, min((c + 1) * chunk, len(data))
        path = workdir / f"chunk{c:04d}.npz"
        ck = hashlib.sha256(f"{key}:{lo}:{hi}".encode()).hexdigest()[:16]
        if path.is_file():
            with np.load(path) as z:
                if str(z["key"]) == ck:
                    deltas.append(torch.from_numpy(z["delta"].astype(np.float32)))
                    oks.append(torch.from_numpy(z["success"]))
                    bar.update(hi - lo)
                    continue
        part_d, part_ok = [], []
        for i in range(lo, hi, batch_size):
            j = min(i + batch_size, hi)
            x = data.x[i:j].to(device)
            r = A.pgd(model, x, data.y[i:j].to(device), threat, steps, step, target=target[i:j].to(device),
                      random_start=False)
            part_d.append((r.x - x).cpu())
            part_ok.append(r.success.cpu())
            bar.update(j - i)
        d, ok = torch.cat(part_d), torch.cat(part_ok)
        save_npz(path, key=np.array(ck), delta=d.numpy().astype(np.float16), success=ok.numpy())
        deltas.append(d.half().float())  # what a resumed run would load: identical results either way
        oks.append(ok)
        log.info(f"{desc}: chunk {c + 1}/{n_chunks} done, success {ok.float().mean():.3f}")
    bar.close()
    return torch.cat(deltas), torch.cat(oks)


def save(path: Path, index: torch.Tensor, label: torch.Tensor, orig_label: torch.Tensor, delta: torch.Tensor,
         success: torch.Tensor) -> None:
    """One non-robust dataset as an npz: canonical indices, new labels, original labels, float16 perturbations."""
    save_npz(path, index=index.numpy(), label=label.numpy(), orig_label=orig_label.numpy(),
             delta=delta.numpy().astype(np.float16), success=success.numpy())


def load(path: Path, source: Split, perturbed: bool = True) -> Split:
    """The images of a stored dataset (source: the verified training split it indexes) with the new labels.
    perturbed=False gives the no-perturbation control: the same images and new labels, without the delta."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run the nrf_generate stage)")
    with np.load(path) as z:
        index, label = torch.from_numpy(z["index"]), torch.from_numpy(z["label"])
        delta = torch.from_numpy(z["delta"].astype(np.float32))
    pos = {int(i): k for k, i in enumerate(source.index.tolist())}
    missing = [int(i) for i in index[:5] if int(i) not in pos]
    if missing:
        raise ValueError(f"{path}: indexes training images {missing} not in the given split")
    x = source.x[torch.tensor([pos[int(i)] for i in index])]
    if perturbed:
        x = (x + delta).clamp_(0, 1)
    return Split(x, label, index)


def summary(delta: torch.Tensor, success: torch.Tensor) -> dict:
    """Attack success rate and the distortion actually used (L2, and per-pixel RMS in 1/255 units)."""
    l2 = delta.flatten(1).norm(dim=1)
    return {"n": len(delta), "success_rate": success.float().mean().item(), "l2_mean": l2.mean().item(),
            "l2_max": l2.max().item(), "rms_per_pixel_255": (delta.pow(2).mean().sqrt() * 255).item()}


def key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
