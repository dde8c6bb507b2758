"""Training: one loop for every model in the pipeline, seeded per epoch and resumable from checkpoints.

Everything random inside epoch e (shuffle, augmentation, an attacker's random start) is drawn after reseeding from
(seed, e), and a checkpoint is written atomically at the end of every epoch. So a run killed at any point and started
again resumes at the last finished epoch and ends with the same weights and metrics as an uninterrupted run.
Adversarial training plugs in through `objective(model, x, y) -> loss`.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .config import AugmentConfig, OptimConfig, TrainConfig
from .data import Split
from .store import atomic, checkpoint_written, code_hash, key as work_key, logger, tensor_hash

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
log = logger("train")


def pick_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' asked for, but torch sees no CUDA device (use device: auto or cpu)")
    return torch.device(name)


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 autocast pays on `device`: CUDA, or a CPU with native bf16 instructions (AVX512-BF16 / AMX).
    Measured here (AMD EPYC, AVX512-BF16, 2 threads): PGD-1 adversarial training of the small CIFAR net 1.6x,
    PGD steps 1.9x faster than fp32. On a CPU without them bf16 is emulated and slower, so it stays fp32."""
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        return bool(check and check())
    return False


def tune_cpu_allocator() -> None:
    """Keep freed memory in the process instead of handing it back to the OS (glibc only).

    By default glibc serves blocks above a moving threshold with mmap and unmaps them on free, so every training
    step page-faults its activations back in: a quarter of a CPU epoch spent in the kernel. Measured here with the
    CIFAR net at batch 512: 936 -> ~1080 images/s. Harmless elsewhere; a no-op off glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: mmap only blocks above 32 MiB (glibc's maximum)
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: give memory back only past 1 GiB free at the top
        libc.mallopt(-2, 256 << 20)  # M_TOP_PAD: grow the heap in large steps
    except (OSError, AttributeError):
        pass


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63)


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD or Adam; weight decay on weight matrices and kernels only, not on biases or norm parameters. The fused
    update (one kernel for all parameters, not a loop of small ops) where torch has it: 3-7% faster training steps
    on the small MNIST nets, where the update is a visible share of the step (benchmarks/throughput.py)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    rest = [p for p in params if p.ndim <= 1]
    # without decay, one group (the same update): each group is another fused call and Python loop, and a tenth of a
    # small MLP's step is the optimizer's
    groups = ([{"params": params, "weight_decay": 0.0}] if cfg.weight_decay == 0 else
              [g for g in ({"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0})
               if g["params"]])
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               fused=fused or None)
    return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), fused=fused or None)


def lr_factor(cfg: OptimConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based)."""
    total = steps_per_epoch * epochs
    t = min(step, total - 1) / max(total - 1, 1)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        epoch = step // steps_per_epoch
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    # onecycle, linear: 0.1 -> 1 over the warmup, then down to 0.01 (Smith & Topin; Page's DAWNBench recipe)
    if cfg.warmup > 0 and t < cfg.warmup:
        return 0.1 + 0.9 * t / cfg.warmup
    return 1.0 - 0.99 * (t - cfg.warmup) / (1 - cfg.warmup)


def augment(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Per-example random horizontal flip and translation by up to cfg.crop pixels (reflect padding)."""
    n, c, h, w = x.shape
    if cfg.flip:
        flip = torch.rand(n, generator=g) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if cfg.crop:
        p = cfg.crop
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        shift = torch.randint(0, (2 * p + 1) ** 2, (n,), generator=g)
        out = torch.empty_like(x)
        for s in shift.unique().tolist():  # one slice per distinct offset: far cheaper than a 4-D gather
            rows = (shift == s).nonzero().squeeze(1)
            dy, dx = divmod(s, 2 * p + 1)
            out[rows] = padded[rows, :, dy:dy + h, dx:dx + w]
        x = out
    return x


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, batch_size: int = 1000, device: torch.device | str = "cpu",
             channels_last: bool = False) -> dict[str, float]:
    """Loss and accuracy of `model` (in eval mode; its mode is restored after)."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(data), batch_size):
        x = data.x[i:i + batch_size].to(device, non_blocking=True)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = data.y[i:i + batch_size].to(device, non_blocking=True)
        out = model(x).float()
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    model.train(was_training)
    n = max(len(data), 1)
    return {"loss": loss / n, "acc": correct / n}


def fit(model: nn.Module, train: Split, test: Split, cfg: TrainConfig, optim: OptimConfig, seed: int,
        device: torch.device, checkpoint: Optional[Path] = None, key: str = "",
        objective: Optional[Objective] = None, on_epoch: Optional[Callable[[int, nn.Module], dict]] = None,
        desc: str = "train") -> list[dict]:
    """Train `model` in place and return one row of metrics per epoch.

    objective: loss of a batch (default: cross-entropy with cfg.label_smoothing). It may run attacks; the model is
    in train mode when it is called.
    on_epoch: extra metrics after each epoch (e.g. robust accuracy on a held-out batch); merged into the row.
    checkpoint: file to resume from / write to at each epoch's end; removed once training finishes.
    """
    if device.type == "cpu":
        tune_cpu_allocator()
    model.to(device)
    channels_last = cfg.channels_last and train.x.ndim == 4
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, optim)
    steps = math.ceil(len(train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(optim, s, steps, cfg.epochs))
    amp = cfg.amp and bf16_native(device)
    if objective is None:
        def objective(m, x, y):
            return F.cross_entropy(m(x), y, label_smoothing=cfg.label_smoothing)

    history: list[dict] = []
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state.get("key") == key:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            history, start = state["history"], state["epoch"] + 1
            log.info(f"{desc}: resuming from {checkpoint} after epoch {start}/{cfg.epochs}")
        else:
            log.info(f"{desc}: ignoring {checkpoint}: it belongs to another configuration")

    tty = sys.stderr.isatty()
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(epoch_seed(seed, epoch))  # the attacker's and dropout's randomness, if any
        g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        order = torch.randperm(len(train), generator=g)
        model.train()
        t0, seen, loss_sum = time.time(), 0, 0.0
        bar = tqdm(range(steps), desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", leave=False, file=sys.stderr,
                   disable=None if tty else True, mininterval=1.0)
        for b in bar:
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = augment(train.x[idx], cfg.augment, g).to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = train.y[idx].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = objective(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        bar.close()
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum / seen}
        ev = evaluate(model, test, cfg.eval_batch_size, device, channels_last)
        row |= {"test_loss": ev["loss"], "test_acc": ev["acc"]}
        if on_epoch is not None:
            row |= on_epoch(epoch, model)
        row["seconds"] = time.time() - t0
        history.append(row)
        log.info(f"{desc} epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch",) and isinstance(v, float)))
        if checkpoint is not None:
            with atomic(checkpoint) as f:
                torch.save({"key": key, "epoch": epoch, "model": model.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict(), "history": history}, f)
            checkpoint_written(checkpoint)
    model.eval()
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    return history


def run_key(spec: dict, trainset: Split, testset: Split, cfg: TrainConfig, optim: OptimConfig, seed: int,
            objective: Optional[Objective] = None, on_epoch=None) -> str:
    """Everything that defines a training run, as one key: the model, the data (pixels and labels of both splits:
    the test split's metrics are part of the resumed history), the training and optimizer configs, the seed, the
    objective's own description (its `spec`), the per-epoch hook's, and the code that computes the weights."""
    for name, fn in (("objective", objective), ("on_epoch", on_epoch)):
        if fn is not None and not hasattr(fn, "spec"):
            raise ValueError(f"train_model: the {name} must carry a `spec` (what defines it) to be keyed; "
                             "see robust.describe")
    if objective is not None and objective.spec.get("label_smoothing", 0.0) != cfg.label_smoothing:
        # an objective computes its own loss: a train.label_smoothing it does not apply would be silently lost
        raise ValueError(f"train.label_smoothing {cfg.label_smoothing:g} but the training objective uses "
                         f"{objective.spec.get('label_smoothing', 0.0):g}: pass it to the objective")
    return work_key(spec, tensor_hash(trainset.x, trainset.y, testset.x, testset.y), cfg.model_dump(),
                    optim.model_dump(), seed, getattr(objective, "spec", None), getattr(on_epoch, "spec", None),
                    code_hash("advrep.train", "advrep.models", "advrep.robust", "advrep.attacks"))


def train_model(spec: dict, trainset: Split, testset: Split, cfg: TrainConfig, optim: OptimConfig, seed: int,
                device: torch.device, checkpoint: Optional[Path] = None, objective: Optional[Objective] = None,
                desc: str = "train", on_epoch: Optional[Callable[[int, nn.Module], dict]] = None
                ) -> tuple[nn.Module, list[dict]]:
    """Build a fresh model from `spec` (see models.build) with torch seeded by `seed`, and fit it. The checkpoint
    is keyed by `run_key`, so a run never resumes another configuration's checkpoint."""
    from . import models

    key = run_key(spec, trainset, testset, cfg, optim, seed, objective, on_epoch)  # also checks the objective
    torch.manual_seed(seed)
    model = models.build(spec)
    history = fit(model, trainset, testset, cfg, optim, seed, device, checkpoint, key, objective, on_epoch, desc)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return model, history
