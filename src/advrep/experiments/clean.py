"""Clean training of the source models (train_mnist, train_cifar): schema, training run and report section.

Every later experiment attacks these models or starts from their recipe. A run trains from its params section,
writes the model (state dict + JSON config), its metrics and per-epoch curves.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from pydantic import model_validator

from .. import data, models, store, train
from ..config import DataConfig, ModelConfig, OptimConfig, Stage, TrainConfig

if TYPE_CHECKING:  # the report's plumbing is imported where a section runs, not by the stage
    from ..render import Context

log = store.logger("train")


class Params(Stage):
    """A clean training run (train_mnist, train_cifar)."""

    data: DataConfig
    model: ModelConfig
    optim: OptimConfig
    train: TrainConfig

    @model_validator(mode="after")
    def _milestones_inside(self):
        if any(m >= self.train.epochs for m in self.optim.milestones):
            raise ValueError(f"optim.milestones {self.optim.milestones} must lie below train.epochs={self.train.epochs}")
        return self


SECTIONS = {"train_mnist": Params, "train_cifar": Params}


def run(section: str, cfg: Params) -> None:
    t0 = time.time()
    out = Path("data/models") / section
    device = train.pick_device(cfg.device)
    raw = Path("data/raw") / f"{cfg.data.dataset}.npz"
    trainset = data.subset(data.load(raw, "train"), cfg.data.train_limit, cfg.seed)
    testset = data.load(raw, "test", limit=cfg.data.test_limit)
    log.info(f"{section}: {cfg.model.arch} on {len(trainset)} {cfg.data.dataset} images, "
             f"{cfg.train.epochs} epochs, device {device}")
    model, history = train.train_model(cfg.model.model_dump() | {"dataset": cfg.data.dataset}, trainset, testset,
                                       cfg.train, cfg.optim, cfg.seed, device,
                                       Path("data/checkpoints") / f"{section}.pt", desc=section)
    final = train.evaluate(model, testset, cfg.train.eval_batch_size, device)
    train_eval = train.evaluate(model, data.subset(trainset, 10000, cfg.seed), cfg.train.eval_batch_size, device)
    seconds = time.time() - t0
    models.save(model, out)
    metrics = {"test_acc": final["acc"], "test_loss": final["loss"], "train_acc": train_eval["acc"],
               "epochs": cfg.train.epochs, "train_size": len(trainset), "test_size": len(testset),
               "parameters": models.param_count(model)}
    log.info(f"{section}: test accuracy {final['acc']:.4f} after {seconds:.0f}s")
    store.publish(section, cfg, t0, str(device), metrics=metrics, plots={section: pd.DataFrame(history)}, out=out,
                  record_metrics=True, train_seconds=sum(r["seconds"] for r in history))


# ---------------------------------------------------------------------------------------------------------------
# Report


CLEAN = (("train_mnist", "MNIST", "train_mnist"), ("train_cifar", "CIFAR-10", "train_cifar"))


def section(ctx: Context) -> str:
    import matplotlib.pyplot as plt
    from ..render import pct, table
    runs = ctx.runs()
    rows = []
    for stage, dataset, anchor in CLEAN:
        m, run_ = ctx.metrics(stage), runs.get(stage)
        if m is None or run_ is None:
            continue
        a = ctx.anchors["clean"][anchor]
        p = run_["params"]
        rows.append({
            "stage": f"`{stage}`", "model": f"{p['model']['arch']} ({m['parameters']:,} params)",
            "data": f"{dataset}, {m['train_size']:,} train / {m['test_size']:,} test",
            "epochs": m["epochs"], "train time": f"{run_['train_seconds']:.0f} s on {run_['provenance']['device']}",
            "test acc (ours)": pct(m["test_acc"], 2), "published": f"{pct(a['value'], 2)}",
            "published setting": f"{a['setting']} ({a['source']})",
        })
    if not rows:
        return "## Clean source models\n\nNot run yet.\n"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for stage, dataset, _ in CLEAN:
        h = ctx.plot(stage)
        if h is None:
            continue
        axes[0].plot(h["epoch"], 100 * h["test_acc"], marker="o", label=dataset)
        axes[1].plot(h["epoch"], h["train_loss"], marker="o", label=dataset)
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="Clean test accuracy")
    axes[1].set(xlabel="epoch", ylabel="training loss", title="Training loss (with label smoothing where set)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    img = ctx.figure(fig, "clean_training")
    return (
        "## Clean source models\n\n"
        "The models every later experiment attacks. Inputs are pixels in [0, 1]; each model normalises inside.\n\n"
        f"{table(rows)}\n\n"
        "The published numbers come from larger models trained for longer; they show where the default profile "
        "stands, not a claim that it matches them. The `paper` profile trains ResNet-50 on CIFAR-10 as Ilyas et al. "
        "did.\n\n"
        f"![Clean training curves]({img})\n"
    )
