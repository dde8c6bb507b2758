"""White-box robustness of the clean models: a check of the attack library (FGSM, PGD, AutoAttack) and its sanity
flags on models with no defence. Schema, evaluation run and report section.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, TYPE_CHECKING

import pandas as pd
from pydantic import Field, field_validator

from .. import data, evaluate, models, store, train
from ..config import AttackConfig, Stage, Strict, increasing_eps, unique_names

if TYPE_CHECKING:  # the report's plumbing is imported where a section runs, not by the stage
    from ..render import Context

log = store.logger("robustness")


class Target(Strict):
    """A trained model to evaluate and its eps grid."""

    eps: list[float]  # pixels in [0, 1]; include 0 (clean) and one huge eps for the sanity check
    large_eps: float = Field(gt=0)  # an eps at which any working attack must reach ~0% accuracy
    slow_eps: list[float] = Field(default_factory=list)  # the eps at which attacks marked slow run

    _eps = field_validator("eps")(increasing_eps)


class Params(Stage):
    """White-box evaluation of the clean models with the attack library and its sanity flags."""

    n: int = Field(gt=0)  # first N test images per model
    batch_size: int = Field(250, gt=0)
    models: dict[Literal["train_mnist", "train_cifar"], Target]
    attacks: list[AttackConfig]

    _names = field_validator("attacks")(lambda v: unique_names(v, "attack"))


SECTIONS = {"robustness": Params}


def run(section: str, cfg: Params) -> None:
    t0 = time.time()
    device = train.pick_device(cfg.device)
    specs = [evaluate.AttackSpec(**a.spec_kwargs()) for a in cfg.attacks]
    tables, flags = [], []
    for name, target in cfg.models.items():
        model = models.load(Path("data/models") / name, device)
        test = data.load(Path("data/raw") / f"{model.config['dataset']}.npz", "test", limit=cfg.n)
        log.info(f"{name}: {len(specs)} attacks x {len(target.eps)} eps on {len(test)} test images")
        t = time.time()
        ev = evaluate.evaluate(model, test.x.to(device), test.y.to(device), specs, target.eps,
                               slow_eps=target.slow_eps, large_eps=target.large_eps, batch_size=cfg.batch_size,
                               seed=cfg.seed)
        ev.table.insert(0, "model", name)
        ev.flags.insert(0, "model", name)
        tables.append(ev.table)
        flags.append(ev.flags)
        log.info(f"{name}: done in {time.time() - t:.0f}s; flags triggered: "
                 f"{', '.join(ev.flags.loc[ev.flags.triggered, 'flag']) or 'none'}")
    table, flags = pd.concat(tables, ignore_index=True), pd.concat(flags, ignore_index=True)
    metrics = {m: {a: {f"eps {e:.4g}": round(acc, 4) for e, acc in zip(g2["eps"], g2["robust_acc"])}
                   for a, g2 in g.groupby("attack", sort=False)} for m, g in table.groupby("model", sort=False)}
    metrics["flags_triggered"] = int(flags["triggered"].sum())
    log.info(f"robustness: {len(table)} rows, {metrics['flags_triggered']} flags")
    store.publish("robustness", cfg, t0, str(device), metrics=metrics, plots={"robustness": table},
                  tables={"robustness_flags": flags})


# ---------------------------------------------------------------------------------------------------------------
# Report


def section(ctx: Context) -> str:
    import matplotlib.pyplot as plt
    from ..render import eps_label, pct, table
    df, flags = ctx.plot("robustness"), ctx.table("robustness_flags")
    if df is None or flags is None:
        return "## White-box robustness of the clean models\n\nNot run yet.\n"
    models_ = list(dict.fromkeys(df["model"]))
    fig, axes = plt.subplots(1, len(models_), figsize=(5 * len(models_), 3.6), squeeze=False)
    parts = []
    for ax, m in zip(axes[0], models_):
        g = df[df["model"] == m]
        eps = sorted(g["eps"].unique())
        for name, a in g.groupby("attack", sort=False):
            a = a.set_index("eps").reindex(eps)
            ax.plot(range(len(eps)), 100 * a["robust_acc"], marker="o", label=f"{name} (n={int(a['n'].max())})")
        ax.set_xticks(range(len(eps)), [eps_label(e) for e in eps])
        ax.set(xlabel="L-inf eps (pixels in [0, 1])", ylabel="accuracy under attack (%)", title=m, ylim=(-3, 103))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        wide = g.pivot_table(index="attack", columns="eps", values="robust_acc", sort=False)
        n_of = g.groupby("attack")["n"].max()
        rows = [{"attack": f"{a} (n={n_of[a]})", **{eps_label(e): pct(v) for e, v in r.items()}}
                for a, r in wide.iterrows()]
        parts.append(f"**`{m}`** (accuracy under attack; eps 0 is clean accuracy)\n\n{table(rows)}\n")
    img = ctx.figure(fig, "robustness_clean")
    frows = [{"model": f"`{r.model}`", "flag": r.flag, "raised": "**yes**" if r.triggered else "no",
              "detail": r.detail, "what it would suggest": r.suggests} for r in flags.itertuples()]
    n_up = int(flags["triggered"].sum())
    verdict = ("No sanity flag is raised: the attacks behave as they should on undefended models (accuracy falls "
               "monotonically to ~0, iterative beats single-step, more steps change little)." if n_up == 0 else
               f"**{n_up} sanity flag(s) raised** — read them before trusting the numbers above.")
    return (
        "## White-box robustness of the clean models\n\n"
        "A check of the attack library on models with no defence: FGSM, PGD with Madry's step rule "
        "(2.5·eps/steps, random start) and AutoAttack (torchattacks' standard version, on a subset). "
        "Undefended models should fall to near 0% at eps 8/255 on CIFAR-10 and 0.3 on MNIST "
        "(Madry et al. 2018 report the same of their naturally trained models).\n\n"
        + "\n".join(parts) + f"\n![Accuracy under attack]({img})\n\n"
        "**Sanity flags** (Carlini et al. 2019, \"On Evaluating Adversarial Robustness\"), computed from the table "
        f"above:\n\n{table(frows)}\n\n{verdict}\n"
    )
