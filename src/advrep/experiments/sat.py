"""Smooth Adversarial Training (Xie et al. 2020) on CIFAR-10: does a smooth activation make single-step adversarial
training more robust than ReLU at the same accuracy and cost? Schema, run and report section.

Every configuration (one per activation, plus the three non-trivial cells of the gradient-quality ablation: ReLU
forward with parametric softplus's derivative for the attacker, the optimizer, or both) is adversarially trained
once per seed with a PGD-1 attacker (random start, L-inf). After every epoch a held-out batch is attacked with
multi-step PGD, to catch catastrophic overfitting. Each model is then evaluated with PGD at several step counts,
FGSM, a huge-eps check, and AutoAttack on a subset for the configurations named in the params.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from .. import attacks, data, evaluate, models, robust, store, train
from ..config import (AdversarialTraining, DataConfig, ModelConfig, OptimConfig, Stage, Strict, TrainConfig,
                      distinct_seeds, known_activations, within)
from ..data import SIZES

if TYPE_CHECKING:  # the report's plumbing is imported where a section runs, not by the stage
    from ..render import Context

log = store.logger("sat")
OUT = Path("data/sat")


class SatEval(Strict):
    n: int = Field(gt=0)  # test images evaluated
    eps: float = Field(gt=0)  # L-inf, pixels in [0, 1]
    steps: list[int]  # PGD step counts of the robust-accuracy-against-steps curve; the last is the headline
    step_ratio: float = Field(2.5, gt=0)  # PGD step = step_ratio * eps / steps
    restarts: int = Field(1, gt=0)
    autoattack_n: int = Field(0, ge=0)  # AutoAttack on the first N of them (0 = off)
    autoattack_for: list[str] = Field(default_factory=list)  # configurations (names) given AutoAttack, seed 0
    large_eps: float = Field(0.5, gt=0)  # sanity flag: PGD must reach ~0% here


class SatMonitor(Strict):
    n: int = Field(gt=0)  # held-out training images attacked after every epoch
    steps: int = Field(10, gt=0)  # multi-step PGD of the catastrophic-overfitting monitor


class Params(Stage):
    """Xie et al. 2020: adversarial training with each activation, and the ReLU gradient-quality ablation."""

    seeds: list[int]  # every configuration is trained once per seed
    data: DataConfig
    model: ModelConfig  # its activation is replaced by each configuration's
    optim: OptimConfig
    train: TrainConfig
    attacker: AdversarialTraining
    activations: list[str]
    ablation: bool = True  # the four cells: ReLU forward, smooth backward for attacker / optimizer, on or off
    monitor: SatMonitor
    eval: SatEval

    _seeds = field_validator("seeds")(distinct_seeds)
    _acts = field_validator("activations")(known_activations)

    @model_validator(mode="after")
    def _fits(self):
        within(self.eval.n + self.monitor.n, self.data.test_limit or SIZES[self.data.dataset][1],
               f"{self.data.dataset} test images (the monitor's images are held out from the evaluated ones)",
               "eval.n + monitor.n")
        return self


SECTIONS = {"sat": Params}
# ablation cells: (name, attacker's backward smooth, optimizer's backward smooth); both off is plain ReLU
ABLATION = (("ReLU, smooth attacker", True, False), ("ReLU, smooth optimizer", False, True),
            ("ReLU, smooth both", True, True))


def configurations(cfg) -> list[dict]:
    out = [{"name": act, "activation": act, "attacker_smooth": None, "optimizer_smooth": None}
           for act in cfg.activations]
    if cfg.ablation:
        out += [{"name": n, "activation": "relu_smoothgrad", "attacker_smooth": a, "optimizer_smooth": o}
                for n, a, o in ABLATION]
    return out


def run(section: str, cfg: Params) -> None:
    t0 = time.time()
    device = train.pick_device(cfg.device)
    raw = Path("data/raw") / f"{cfg.data.dataset}.npz"
    trainset = data.subset(data.load(raw, "train"), cfg.data.train_limit, cfg.seed)
    test = data.load(raw, "test", limit=cfg.data.test_limit)
    x, y = test.x[:cfg.eval.n].to(device), test.y[:cfg.eval.n].to(device)
    mx, my = test.x[-cfg.monitor.n:], test.y[-cfg.monitor.n:]  # held out from the evaluated images
    a = cfg.attacker
    threat = attacks.threat(a.norm, a.eps)
    ev = cfg.eval
    specs = [evaluate.AttackSpec(name="FGSM", kind="fgsm")]
    specs += [evaluate.AttackSpec(name=f"PGD-{k}", kind="pgd", steps=k, step_ratio=ev.step_ratio,
                                  restarts=ev.restarts) for k in ev.steps]
    headline = f"PGD-{ev.steps[-1]}"
    rows, monitor, flags = [], [], []
    for c in configurations(cfg):
        for seed in cfg.seeds:
            spec = cfg.model.spec(cfg.data.dataset, activation=c["activation"])
            objective = robust.pgd_objective(threat, a.steps, a.step, a.random_start, c["attacker_smooth"],
                                             c["optimizer_smooth"])
            hook = robust.overfit_monitor(mx, my, attacks.threat(a.norm, a.eps), cfg.monitor.steps, ev.step_ratio)
            t = time.time()
            model, history = train.train_model(
                spec, trainset, test, cfg.train, cfg.optim, seed, device,
                Path("data/checkpoints") / f"sat_{c['name'].replace(' ', '_').replace(',', '')}_{seed}.pt",
                objective, desc=f"{c['name']} seed {seed}", on_epoch=hook)
            train_seconds = time.time() - t
            models.save(model, OUT / c["name"].replace(" ", "_").replace(",", "") / f"seed{seed}")
            monitor += [{"config": c["name"], "seed": seed, **h} for h in history]
            run_specs = specs
            if c["name"] in ev.autoattack_for and seed == cfg.seeds[0] and ev.autoattack_n:
                run_specs = specs + [evaluate.AttackSpec(name="AutoAttack", kind="autoattack", max_n=ev.autoattack_n,
                                                         eps=(ev.eps,))]
            result = evaluate.evaluate(model, x, y, run_specs, [ev.eps, ev.large_eps], large_eps=ev.large_eps,
                                       batch_size=cfg.train.eval_batch_size, seed=seed)
            df, f = result.table, result.flags
            f.insert(0, "seed", seed)
            f.insert(0, "config", c["name"])
            flags.append(f)
            pgd = [h["monitor_pgd_acc"] for h in history]
            co = robust.catastrophic_overfitting(pgd)
            df.insert(0, "seed", seed)
            df.insert(0, "config", c["name"])
            df["train_seconds"] = train_seconds
            df["overfit_epoch"] = co if co is not None else 0
            rows.append(df)
            at = df[(df["attack"] == headline) & (df["eps"] == ev.eps)].iloc[0]
            log.info(f"{c['name']} seed {seed}: clean {at.clean_acc:.4f}, {headline} {at.robust_acc:.4f} "
                     f"({train_seconds:.0f}s training{'; catastrophic overfitting at epoch %d' % co if co else ''})")
    table, flags = pd.concat(rows, ignore_index=True), pd.concat(flags, ignore_index=True)
    main_rows = table[(table["eps"] == ev.eps) & (table["attack"] == headline)]
    metrics = {}
    for name, g in main_rows.groupby("config", sort=False):
        metrics[name] = {"clean_acc_mean": round(g["clean_acc"].mean(), 4), "clean_acc_std": round(g["clean_acc"].std(ddof=1), 4) if len(g) > 1 else 0.0,
                         "robust_acc_mean": round(g["robust_acc"].mean(), 4), "robust_acc_std": round(g["robust_acc"].std(ddof=1), 4) if len(g) > 1 else 0.0,
                         "seeds": len(g), "train_seconds_mean": round(g["train_seconds"].mean(), 1)}
    metrics["flags_triggered"] = int(flags["triggered"].sum())
    metrics["catastrophic_overfitting_runs"] = int((main_rows["overfit_epoch"] > 0).sum())
    log.info(f"sat: {len(main_rows)} runs")
    store.publish("sat", cfg, t0, str(device), metrics=metrics, plots={"sat": table}, out=OUT,
                  tables={"sat_monitor": pd.DataFrame(monitor), "sat_flags": flags})


# ---------------------------------------------------------------------------------------------------------------
# Report


def section(ctx: Context) -> str:
    import matplotlib.pyplot as plt
    from ..render import PAPER_RUN, eps_label, pct, pm, table
    title = "## Smooth Adversarial Training (Xie et al. 2020)\n\n"
    df, mon, flags = ctx.plot("sat"), ctx.table("sat_monitor"), ctx.table("sat_flags")
    if df is None or mon is None or flags is None:
        return title + "Not run yet.\n"
    p = ctx.runs()["sat"]["params"]
    ev = p["eval"]
    eps = ev["eps"]
    headline = f"PGD-{ev['steps'][-1]}"
    main = df[(df["eps"] == eps) & (df["attack"] == headline)]
    st = main.groupby("config", sort=False).agg(clean=("clean_acc", "mean"), clean_sd=("clean_acc", "std"),
                                                 robust=("robust_acc", "mean"), robust_sd=("robust_acc", "std"),
                                                 seeds=("seed", "count"), secs=("train_seconds", "mean"),
                                                 overfit=("overfit_epoch", lambda v: int((v > 0).sum())))
    st[["clean_sd", "robust_sd"]] = st[["clean_sd", "robust_sd"]].fillna(0.0)
    aa = df[(df["attack"] == "AutoAttack") & (df["eps"] == eps)].set_index("config")["robust_acc"]
    ck = ctx.anchors["xie"]["checkpoints"]
    rows = []
    for name, s in st.iterrows():
        ref = ck.get(name)
        rows.append({"configuration": name, "seeds": int(s["seeds"]),
                     "clean (ours)": pm(s["clean"], s["clean_sd"]),
                     f"{headline} {eps_label(eps)} (ours)": pm(s["robust"], s["robust_sd"]),
                     "AutoAttack (ours, seed 0)": pct(aa.get(name)),
                     "paper checkpoint, ImageNet (clean / PGD-50)": f"{pct(ref[0])} / {pct(ref[1])}" if ref else "–",
                     "train time": f"{s['secs']:.0f} s",
                     "catastrophic overfitting": f"{int(s['overfit'])} of {int(s['seeds'])} runs"})

    acts = [c for c in st.index if not c.startswith("ReLU,")]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = np.arange(len(acts))
    ax.bar(xs - 0.2, 100 * st.loc[acts, "clean"], 0.4, yerr=100 * st.loc[acts, "clean_sd"], capsize=3, label="clean")
    ax.bar(xs + 0.2, 100 * st.loc[acts, "robust"], 0.4, yerr=100 * st.loc[acts, "robust_sd"], capsize=3,
           label=f"{headline}, eps {eps_label(eps)}")
    ax.set_xticks(xs, acts)
    ax.set(ylabel="accuracy (%)", title="PGD-1 adversarial training per activation (mean ± sd over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    img = ctx.figure(fig, "sat_activations")

    fig, ax = plt.subplots(figsize=(6, 3.6))
    pgd = df[(df["eps"] == eps) & df["attack"].str.startswith("PGD-")]
    for name, g in pgd.groupby("config", sort=False):
        m = g.groupby("steps")["robust_acc"].mean()
        ax.plot(m.index, 100 * m.values, marker="o", label=name, ls="--" if name.startswith("ReLU,") else "-")
    ax.set_xscale("log")
    ax.set(xlabel="PGD steps", ylabel=f"robust accuracy at {eps_label(eps)} (%)",
           title="Robust accuracy against attack steps (mean over seeds)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    img2 = ctx.figure(fig, "sat_steps")

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, g in mon.groupby("config", sort=False):
        m = g.groupby("epoch")["monitor_pgd_acc"].mean()
        ax.plot(m.index, 100 * m.values, marker=".", label=name, ls="--" if name.startswith("ReLU,") else "-")
    ax.set(xlabel="epoch", ylabel="held-out PGD accuracy (%)",
           title=f"Overfitting monitor: PGD-{p['monitor']['steps']} on {p['monitor']['n']} held-out images")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    img3 = ctx.figure(fig, "sat_monitor")

    raised = flags[flags["triggered"]]
    few = raised["detail"].str.fullmatch(r"(PGD-[12]: [^;]*; ?)*PGD-[12]: [^;]*|eps [\d.]+: PGD-1 [^;]*")
    flag_text = ("No sanity flag is raised on any model." if raised.empty else
                 f"**{len(raised)} sanity flag(s) raised** (Carlini et al. 2019): " + "; ".join(
                     f"{flag} on {g['config'].nunique()} configuration(s), e.g. {g['detail'].iloc[0]}"
                     for flag, g in raised.groupby("flag", sort=False)) + ".")
    big = df[(df["eps"] == ev["large_eps"]) & (df["attack"] == headline)]["robust_acc"]
    if len(raised) and few.all() and len(big) and big.max() <= 0.05:
        flag_text += (f" Every one of them comes from PGD-1 or PGD-2 at the huge eps {ev['large_eps']:g}: one or two "
                      f"steps cannot cross a ball that large, while {headline} reaches at most {pct(big.max())} "
                      "there on every model. They reflect the short attacks of the steps curve, not masked "
                      "gradients.")
    a = p["attacker"]
    return (
        title +
        f"CIFAR-10, `{p['model']['arch']}` widths {p['model']['widths']}, {p['data']['train_limit'] or 50000:,} "
        f"training images, {p['train']['epochs']} epochs, adversarial training with a single-step attacker "
        f"(PGD-1 with random start, L-inf eps {eps_label(a['eps'])}, step {eps_label(a['step'])}); evaluation on "
        f"the first {ev['n']} test images with PGD ({', '.join(map(str, ev['steps']))} steps, step "
        f"{ev['step_ratio']}·eps/steps) and AutoAttack on {ev['autoattack_n']} of them. The last four rows are "
        "the gradient-quality ablation: ReLU in the forward pass, parametric softplus's derivative (alpha 10) in "
        "the backward pass of the attacker, of the optimizer, or of both (both off is the `relu` row).\n\n"
        f"{table(rows)}\n\n{reading(st, p)}\n\n![per activation]({img})\n\n![against steps]({img2})\n\n"
        f"![monitor]({img3})\n\n{flag_text}\n\n"
        f"**Paper's numbers** (ImageNet, ResNet-50, eps 4/255): ReLU 68.8% clean / 33.0% robust, SiLU 69.7% / "
        f"42.3%. Ours differ in dataset (CIFAR-10, 32x32, 10 classes), model (`{p['model']['arch']}`, not "
        f"ResNet-50), eps ({eps_label(eps)}; the same number, on a different image scale), training length (minutes "
        f"on a CPU, {p['data']['train_limit'] or 50000:,} images, not a full ImageNet schedule) and evaluation "
        f"(PGD-{ev['steps'][-1]}, not PGD-50/200). Compare the *differences* between activations, not the "
        "levels.\n\n"
        f"**Paper profile.** `profiles/paper.yaml` trains a ResNet-18 on all of CIFAR-10 per configuration, with "
        f"PGD-200 evaluation. Run: {PAPER_RUN}. Expected wall time on one H100 (our "
        "estimate, not measured): about 10 min per run, 20 runs, "
        "so ~3.5 h; not run here (no GPU).\n"
    )


def reading(st: pd.DataFrame, p: dict) -> str:
    from ..render import pct, pm
    out = ["**Reading the table.**"]
    if "relu" not in st.index:
        return ""
    r = st.loc["relu"]
    smooth = [c for c in st.index if not c.startswith("ReLU,") and c != "relu"]
    noise = max(st["robust_sd"].max(), 0.005)
    if smooth:
        best = max(smooth, key=lambda c: st.loc[c, "robust"])
        worst = min(smooth, key=lambda c: st.loc[c, "robust"])
        gain = st.loc[best, "robust"] - r["robust"]
        beat = [c for c in smooth if st.loc[c, "robust"] - r["robust"] > 2 * noise]
        out.append(
            f"Robust accuracy: ReLU {pm(r['robust'], r['robust_sd'])}; the smooth activations range from "
            f"{pct(st.loc[worst, 'robust'])} ({worst}) to {pct(st.loc[best, 'robust'])} ({best}), a best gain of "
            f"{100 * gain:+.1f} points against a seed spread of up to {100 * noise:.1f} points. "
            + (f"Beyond twice that spread: {', '.join(beat)}." if beat else
               "No smooth activation beats ReLU by more than twice the seed spread: at this scale the claim is "
               "not confirmed (nor ruled out)."))
    cells = [c for c in st.index if c.startswith("ReLU,")]
    if cells:
        out.append("Ablation, change against plain ReLU (clean / robust): " + "; ".join(
            f"{c.removeprefix('ReLU, ')}: {100 * (st.loc[c, 'clean'] - r['clean']):+.1f} / "
            f"{100 * (st.loc[c, 'robust'] - r['robust']):+.1f} points" for c in cells) +
            ". The paper (note) found a smooth attacker gradient raises robustness and costs a little accuracy, and "
            "a smooth optimizer gradient raises both.")
    co = int(st["overfit"].sum())
    out.append("Catastrophic overfitting (the held-out PGD accuracy falling under half its best): " +
               (f"seen in {co} run(s); see the monitor figure." if co else "not seen in any run."))
    return " ".join(out)
