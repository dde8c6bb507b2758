"""Smooth Adversarial Training (Xie et al. 2020) on CIFAR-10, as a paired comparison that can answer its question:
does a smooth activation (SiLU, SAT's best) make single-step adversarial training more robust than ReLU?
Schema, runs, statistics and report section.

Design. Every seed trains both arms of the primary question: ReLU and SiLU start from the same initial weights
(the activation has no parameters, so torch seeded alike builds the same tensors), see the same batches in the same
order with the same augmentation, and the training attacker draws the same random starts (everything random in an
epoch is seeded from (seed, epoch)). The per-seed difference therefore measures the activation, and its mean over
seeds gets a t interval; a verdict is computed from that interval. SAT's mechanism is tested the same way: ReLU's
forward pass with parametric softplus's derivative in the backward pass of the attacker, of the optimizer, or of
both (the paper's Table 1), paired with the same seeds' ReLU runs. The other smooth activations are a sweep marked
exploratory, on fewer seeds. The training attacker is SAT's: PGD-1 from a random start (step = eps), BatchNorm in
eval mode while attacking. Weight decay never touches BatchNorm parameters or biases. A held-out batch is attacked
with multi-step PGD after every epoch, to catch catastrophic overfitting.

Evaluation: one fixed set of test images for every model, PGD-10 and PGD-50 at the training eps (their worst case
per example is the headline), FGSM, PGD at a huge eps for the sanity check, and standard AutoAttack on a subset with
the same clean accuracy for the primary arms of the first seed.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from .. import attacks, data, evaluate, models, robust, stats, store, sweep, train
from ..config import (AdversarialTraining, DataConfig, ModelConfig, OptimConfig, Stage, Strict, TrainConfig,
                      distinct_seeds, known_activations, within)
from ..data import SIZES

if TYPE_CHECKING:  # the report's plumbing is imported where a section runs, not by the stage
    from ..render import Context

log = store.logger("sat")
OUT = Path("data/sat")


class Eval(Strict):
    n: int = Field(gt=0)  # the first N test images: one fixed set for every model
    eps: float = Field(gt=0)  # L-inf, pixels in [0, 1]: the training eps
    steps: list[int]  # PGD step counts, e.g. [10, 50]; the headline is the worst case over them per example
    step_ratio: float = Field(2.5, gt=0)  # PGD step = step_ratio * eps / steps (Madry et al.) ...
    step: Optional[float] = Field(None, gt=0)  # ... or this fixed step for every step count (the paper: 1/255)
    restarts: int = Field(1, gt=0)
    autoattack_n: int = Field(0, ge=0)  # standard AutoAttack on this many of them (matched clean accuracy), 0: off
    large_eps: float = Field(0.5, gt=0)  # sanity check: PGD must reach ~0% here

    @field_validator("steps")
    @classmethod
    def _steps(cls, v):
        if not v or any(s < 1 for s in v) or v != sorted(set(v)):
            raise ValueError(f"expected increasing distinct step counts >= 1, got {v}")
        return v


class Monitor(Strict):
    n: int = Field(gt=0)  # held-out test images (the last N, disjoint from the evaluated ones), after every epoch
    steps: int = Field(10, gt=0)  # multi-step PGD of the catastrophic-overfitting monitor


class Params(Stage):
    """Xie et al. 2020 on CIFAR-10: ReLU against SiLU, paired by seed; the mechanism cells; an exploratory sweep."""

    seeds: list[int]  # one pair per seed: both arms share initial weights, batch order, augmentation and noise
    data: DataConfig
    model: ModelConfig  # its activation is replaced by each configuration's
    optim: OptimConfig
    train: TrainConfig
    attacker: AdversarialTraining  # SAT's: steps 1, step = eps, random start
    primary: list[str]  # [control, treatment]: ReLU and SiLU
    mechanism: bool = True  # ReLU forward with a smooth backward for the attacker, the optimizer, or both
    mechanism_seeds: Optional[int] = Field(None, gt=0)  # the first N seeds run the mechanism cells (null: all)
    exploratory: list[str] = Field(default_factory=list)  # further smooth activations, reported as exploratory
    exploratory_seeds: int = Field(1, gt=0)  # the first N seeds run them
    min_effect: float = Field(0.01, gt=0)  # the smallest robust-accuracy gain (a fraction) worth detecting here:
    #   an interval entirely below it rules the claim out at this resolution
    monitor: Monitor
    eval: Eval
    executor: sweep.Executor = sweep.Executor()

    _seeds = field_validator("seeds")(distinct_seeds)

    @field_validator("primary")
    @classmethod
    def _primary(cls, v):
        known_activations(v, "primary")
        if len(v) != 2:
            raise ValueError(f"expected [control, treatment], got {v}")
        return v

    @field_validator("exploratory")
    @classmethod
    def _exploratory(cls, v):
        return known_activations(v, "exploratory") if v else v

    @model_validator(mode="after")
    def _fits(self):
        within(self.eval.n + self.monitor.n, self.data.test_limit or SIZES[self.data.dataset][1],
               f"{self.data.dataset} test images (the monitor's images are held out from the evaluated ones)",
               "eval.n + monitor.n")
        within(self.eval.autoattack_n, self.eval.n, "evaluated images", "eval.autoattack_n")
        if set(self.primary) & set(self.exploratory):
            raise ValueError(f"exploratory {self.exploratory} repeats a primary arm {self.primary}")
        if self.mechanism and self.primary[0] != "relu":
            raise ValueError("the mechanism cells are ReLU variants: primary[0] (the control) must be relu")
        return self


SECTIONS = {"sat": Params}
# mechanism cells: (name, attacker's backward smooth, optimizer's backward smooth); both off is plain ReLU
MECHANISM = (("ReLU, smooth attacker", True, False), ("ReLU, smooth optimizer", False, True),
             ("ReLU, smooth both", True, True))


def configurations(cfg: Params) -> list[dict]:
    """Every configuration with its role and the seeds it runs on."""
    control, treatment = cfg.primary
    out = [{"name": a, "activation": a, "attacker_smooth": None, "optimizer_smooth": None, "role": role,
            "seeds": list(cfg.seeds)} for a, role in ((control, "control"), (treatment, "primary"))]
    if cfg.mechanism:
        k = cfg.mechanism_seeds or len(cfg.seeds)
        out += [{"name": n, "activation": "relu_smoothgrad", "attacker_smooth": a, "optimizer_smooth": o,
                 "role": "mechanism", "seeds": list(cfg.seeds[:k])} for n, a, o in MECHANISM]
    out += [{"name": a, "activation": a, "attacker_smooth": None, "optimizer_smooth": None, "role": "exploratory",
             "seeds": list(cfg.seeds[:cfg.exploratory_seeds])} for a in cfg.exploratory]
    return out


def slug(name: str) -> str:
    return name.replace(" ", "_").replace(",", "")


def _sets(cfg: Params):
    raw = Path("data/raw") / f"{cfg.data.dataset}.npz"
    trainset = data.subset(data.load(raw, "train"), cfg.data.train_limit, cfg.seed)
    test = data.load(raw, "test", limit=cfg.data.test_limit)
    held = data.Split(test.x[-cfg.monitor.n:], test.y[-cfg.monitor.n:], test.index[-cfg.monitor.n:])
    return trainset, test, held


def specs(cfg: Params, with_aa: bool) -> list[evaluate.AttackSpec]:
    ev = cfg.eval
    ratio = (lambda k: ev.step * k / ev.eps) if ev.step is not None else (lambda k: ev.step_ratio)
    out = [evaluate.AttackSpec(name="FGSM", kind="fgsm")]
    out += [evaluate.AttackSpec(name=f"PGD-{k}", kind="pgd", steps=k, step_ratio=ratio(k), restarts=ev.restarts)
            for k in ev.steps]
    out.append(evaluate.AttackSpec(name=f"PGD-{ev.steps[0]} (huge eps)", kind="pgd", steps=ev.steps[0],
                                   step_ratio=ev.step_ratio, eps=(ev.large_eps,)))
    if with_aa:
        out.append(evaluate.AttackSpec(name="AutoAttack", kind="autoattack", max_n=ev.autoattack_n))
    return out


def unit(cfg: Params, conf: dict, seed: int, with_aa: bool) -> dict:
    """One configuration and seed: adversarial training, then the evaluation. Plain data out (see sweep)."""
    device = train.pick_device(cfg.device)
    trainset, test, held = _sets(cfg)
    a, ev = cfg.attacker, cfg.eval
    threat = attacks.threat(a.norm, a.eps)
    objective = robust.pgd_objective(threat, a.steps, a.step, a.random_start, conf["attacker_smooth"],
                                     conf["optimizer_smooth"], label_smoothing=cfg.train.label_smoothing)
    hook = robust.overfit_monitor(held.x, held.y, threat, cfg.monitor.steps, ev.step_ratio)
    t = time.time()
    model, history = train.train_model(cfg.model.spec(cfg.data.dataset, activation=conf["activation"]), trainset,
                                       held, cfg.train, cfg.optim, seed, device,
                                       Path("data/checkpoints") / f"sat_{slug(conf['name'])}_{seed}.pt", objective,
                                       desc=f"{conf['name']} seed {seed}", on_epoch=hook)
    seconds = time.time() - t
    x, y = test.x[:ev.n].to(device), test.y[:ev.n].to(device)
    result = evaluate.evaluate(model, x, y, specs(cfg, with_aa), [ev.eps], large_eps=ev.large_eps,
                               batch_size=cfg.train.eval_batch_size, seed=seed)
    aa = result.correct.get(("AutoAttack", ev.eps))
    return {"state": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history,
            "rows": result.table.to_dict("records"), "flags": result.flags.to_dict("records"),
            "train_seconds": seconds,
            "autoattack": None if aa is None else {"index": aa[0].cpu().tolist(), "ok": aa[1].cpu().tolist()}}


def run(section: str, cfg: Params) -> None:
    t0 = time.time()
    device = train.pick_device(cfg.device)
    code = store.code_hash("advrep.experiments.sat", "advrep.train", "advrep.models", "advrep.robust",
                           "advrep.attacks", "advrep.evaluate", "advrep.data")
    defining = cfg.model_dump(exclude={"executor", "seeds", "mechanism_seeds", "exploratory_seeds", "exploratory",
                                       "primary", "mechanism", "min_effect"})
    units, meta = [], []
    for conf in configurations(cfg):
        for seed in conf["seeds"]:
            with_aa = bool(cfg.eval.autoattack_n) and conf["role"] in ("control", "primary") and seed == cfg.seeds[0]
            c = {k: v for k, v in conf.items() if k != "seeds"}
            units.append(sweep.Unit(store.key("sat", defining, c, seed, with_aa, str(device), code), unit,
                                    (cfg, c, seed, with_aa), name=f"{conf['name']} seed {seed}"))
            meta.append((conf, seed))
    log.info(f"sat: {len(units)} runs ({len(cfg.seeds)} pairs of {' / '.join(cfg.primary)}) on "
             f"{cfg.data.train_limit or SIZES['cifar10'][0]} images, executor {cfg.executor.kind}")
    results = sweep.run("sat", units, cfg.executor)

    rows, monitor, flags, aa = [], [], [], {}
    for (conf, seed), r in zip(meta, results):
        model = models.build(cfg.model.spec(cfg.data.dataset, activation=conf["activation"]))
        model.load_state_dict(r["state"])
        models.save(model, OUT / slug(conf["name"]) / f"seed{seed}")
        co = robust.catastrophic_overfitting([h["monitor_pgd_acc"] for h in r["history"]])
        for row in r["rows"]:
            rows.append({"config": conf["name"], "role": conf["role"], "seed": seed, **row,
                         "train_seconds": r["train_seconds"], "overfit_epoch": co or 0})
        monitor += [{"config": conf["name"], "seed": seed, **h} for h in r["history"]]
        flags += [{"config": conf["name"], "seed": seed, **f} for f in r["flags"]]
        if r["autoattack"] is not None:
            aa[conf["name"]] = r["autoattack"]
    table, flags = pd.DataFrame(rows), pd.DataFrame(flags)
    metrics = summarise(cfg, table, aa)
    metrics["flags_triggered"] = int(flags["triggered"].sum())
    log.info(f"sat: {cfg.primary[1]} - {cfg.primary[0]} robust accuracy {100 * metrics[_key(cfg)]:+.2f} "
             f"± {100 * metrics[_key(cfg, 'ci95')]:.2f} points over {metrics['pairs']} pairs: {metrics['verdict']}")
    store.publish("sat", cfg, t0, str(device), metrics=metrics, plots={"sat": table}, out=OUT,
                  tables={"sat_monitor": pd.DataFrame(monitor), "sat_flags": flags})
    store.Resume("sat").clear()


def _key(cfg: Params, what: str = "mean") -> str:
    control, treatment = cfg.primary
    return f"{treatment}_minus_{control}_{what}"


def headline(table: pd.DataFrame, eps: float) -> pd.DataFrame:
    """One row per configuration and seed: clean accuracy and the headline robust accuracy (the worst case per
    example over the PGD attacks and FGSM at the training eps, on every evaluated image)."""
    at = table[np.isclose(table["eps"], eps)]
    worst = at[at["attack"] == evaluate.WORST]
    if worst.empty:  # a single attack: it is the headline
        worst = at[at["kind"] == "pgd"]
    return worst.groupby(["config", "seed"], sort=False).agg(clean=("clean_acc", "first"),
                                                             robust=("robust_acc", "min"))


def summarise(cfg: Params, table: pd.DataFrame, aa: dict) -> dict:
    """Means and 95% intervals over seeds, paired differences against the control, the verdict."""
    control, treatment = cfg.primary
    ev = cfg.eval
    h = headline(table, ev.eps)
    # the headline's n: every evaluated image (the worst case of the PGD attacks and FGSM, not of AutoAttack)
    out: dict = {"n": ev.n, "pairs": len(cfg.seeds), "eps": ev.eps}
    per_seed = {c: g.droplevel(0) for c, g in h.groupby(level=0, sort=False)}
    base = per_seed[control]
    configs = {}
    for name, g in per_seed.items():
        common = [s for s in g.index if s in base.index]
        d = stats.paired(base.loc[common, "robust"].tolist(), g.loc[common, "robust"].tolist())
        dc = stats.paired(base.loc[common, "clean"].tolist(), g.loc[common, "clean"].tolist())
        configs[name] = {"seeds": len(g), **_ci("clean_acc", stats.mean_ci(g["clean"])),
                         **_ci("robust_acc", stats.mean_ci(g["robust"])),
                         **({} if name == control else {**_ci(f"robust_minus_{control}", d),
                                                        **_ci(f"clean_minus_{control}", dc)})}
    for arm in (control, treatment):
        out[f"{arm}_clean_acc"] = configs[arm]["clean_acc_mean"]
        out[f"{arm}_robust_acc"] = configs[arm]["robust_acc_mean"]
    diff = stats.paired(base["robust"].tolist(), per_seed[treatment].loc[base.index, "robust"].tolist())
    out[_key(cfg)], out[_key(cfg, "ci95")] = diff.mean, diff.half
    out["verdict"] = stats.verdict(diff, cfg.min_effect)
    out["configs"] = configs
    if control in aa and treatment in aa:
        a, b = aa[control], aa[treatment]
        d = stats.paired_images(a["ok"], b["ok"])
        out["autoattack"] = {"n": len(a["ok"]), control: float(np.mean(a["ok"])), treatment: float(np.mean(b["ok"])),
                             f"{treatment}_minus_{control}_mean": d.mean, f"{treatment}_minus_{control}_ci95": d.half}
    out["catastrophic_overfitting_runs"] = int(table.groupby(["config", "seed"])["overfit_epoch"].first().gt(0).sum())
    return out


def _ci(prefix: str, iv: stats.Interval) -> dict:
    return {f"{prefix}_mean": iv.mean, f"{prefix}_ci95": iv.half}


# ---------------------------------------------------------------------------------------------------------------
# Report


def section(ctx: Context) -> str:
    import matplotlib.pyplot as plt

    from ..render import PAPER_RUN, ci, eps_label, pct, table
    title = f"## {TITLE}\n\n"
    df, mon, flags, m = ctx.plot("sat"), ctx.table("sat_monitor"), ctx.table("sat_flags"), ctx.metrics("sat")
    run = ctx.runs().get("sat")
    if df is None or mon is None or flags is None or m is None or run is None:
        return title + "Not run yet.\n"
    p = run["params"]
    ev = p["eval"]
    control, treatment = p["primary"]
    anchors = ctx.anchors["xie"]
    ck = anchors["checkpoints"]
    h = headline(df, ev["eps"])
    configs = m["configs"]
    roles = df.groupby("config", sort=False)["role"].first()
    aa = m.get("autoattack", {})
    attacks_at = df[np.isclose(df["eps"], ev["eps"])]
    pgd_names = [f"PGD-{k}" for k in ev["steps"]]
    rows = []
    for name, c in configs.items():
        g = attacks_at[attacks_at["config"] == name]
        pgd = {a: stats.mean_ci(g[g["attack"] == a]["robust_acc"]) for a in pgd_names}
        ref = ck.get(name)
        diff = (f"{ci(c[f'robust_minus_{control}_mean'], c[f'robust_minus_{control}_ci95'], signed=True)} / "
                f"{ci(c[f'clean_minus_{control}_mean'], c[f'clean_minus_{control}_ci95'], signed=True)}"
                if name != control else "–")
        rows.append({"configuration": name + (" (exploratory)" if roles[name] == "exploratory" else ""),
                     "seeds": c["seeds"], "clean": ci(c["clean_acc_mean"], c["clean_acc_ci95"]),
                     **{f"{a} {eps_label(ev['eps'])}": ci(iv.mean, iv.half) for a, iv in pgd.items()},
                     "robust (worst case)": ci(c["robust_acc_mean"], c["robust_acc_ci95"]),
                     f"paired minus {control}: robust / clean": diff,
                     f"AutoAttack (seed {p['seeds'][0]}, n={aa.get('n', 0)})": pct(aa.get(name)) if aa else "–",
                     "paper ImageNet (clean / PGD-50)": f"{pct(ref[0])} / {pct(ref[1])}" if ref else "–"})

    # figure: per-seed paired differences with mean and 95% interval
    others = [c for c in configs if c != control]
    fig, ax = plt.subplots(figsize=(7.2, 0.55 * len(others) + 1.6))
    for i, name in enumerate(others):
        g = h.loc[name]["robust"]
        base = h.loc[control]["robust"].reindex(g.index)
        d = 100 * (g - base)
        ax.scatter(d.values, np.full(len(d), i) + np.linspace(-0.12, 0.12, len(d)), s=14, color="0.55",
                   label="one seed (paired)" if i == 0 else None, zorder=2)
        c = configs[name]
        mean, half = 100 * c[f"robust_minus_{control}_mean"], 100 * c[f"robust_minus_{control}_ci95"]
        ax.errorbar([mean], [i], xerr=[[0 if math.isnan(half) else half]], fmt="o", color="C3" if i == 0 else "C0",
                    capsize=4, label="mean and 95% t interval" if i == 0 else None, zorder=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvspan(0, 100 * p["min_effect"], color="C2", alpha=0.12, label=f"gains below {100 * p['min_effect']:g} pts")
    ax.set_yticks(range(len(others)), [n + (" (expl.)" if roles[n] == "exploratory" else "") for n in others])
    ax.invert_yaxis()
    ax.set(xlabel=f"robust accuracy minus {control}'s, same seed (percentage points)",
           title=f"Paired differences, robust accuracy at {eps_label(ev['eps'])} (worst case of FGSM and PGD)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    img = ctx.figure(fig, "sat_paired")

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, g in mon.groupby("config", sort=False):
        mm = g.groupby("epoch")["monitor_pgd_acc"].mean()
        ax.plot(mm.index, 100 * mm.values, marker=".", label=name, ls="--" if name.startswith("ReLU,") else "-")
    ax.set(xlabel="epoch", ylabel="held-out PGD accuracy (%)",
           title=f"Overfitting monitor: PGD-{p['monitor']['steps']} on {p['monitor']['n']} held-out images "
                 "(mean over seeds)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    img2 = ctx.figure(fig, "sat_monitor")

    raised = flags[flags["triggered"]]
    flag_text = ("No sanity flag (Carlini et al. 2019) is raised on any model." if raised.empty else
                 f"**{len(raised)} sanity flag(s) raised** (Carlini et al. 2019): " + "; ".join(
                     f"{flag} on {g['config'].nunique()} configuration(s), e.g. {g['config'].iloc[0]} seed "
                     f"{g['seed'].iloc[0]}: {g['detail'].iloc[0]}" for flag, g in raised.groupby("flag", sort=False))
                 + ".")
    return (
        title + f"Is single-step adversarial training more robust with a smooth activation? {len(p['seeds'])} "
        f"pairs of {control} / {treatment} nets (`{p['model']['arch']}` {p['model']['widths']}), each pair sharing "
        "initial weights, batch order, augmentation and the attacker's random starts, trained with SAT's attacker "
        f"(PGD-1, random start, step {p['attacker']['step'] * 255:.0f}/255, L-inf eps "
        f"{eps_label(p['attacker']['eps'])}) on {p['data']['train_limit'] or 50000:,} CIFAR-10 images for "
        f"{p['train']['epochs']} epochs, and evaluated on the same {ev['n']:,} test images. Intervals are 95% t "
        "intervals over seeds; differences are paired by seed.\n\n"
        f"{table(rows)}\n\n![paired differences]({img})\n\n{reading(m, p, anchors)}\n\n{flag_text}\n\n"
        f"![monitor]({img2})\n\n"
        f"**Paper profile.** `profiles/paper.yaml` trains a ResNet-18 per run on all of CIFAR-10 with the paper's "
        f"evaluation (PGD-200 with a 1/255 step). Run: {PAPER_RUN}.\n"
    )


def reading(m: dict, p: dict, anchors: dict) -> str:
    """The verdict and what supports it, computed from the metrics."""
    from ..render import ci, pct
    control, treatment = p["primary"]
    mean, half = m[f"{treatment}_minus_{control}_mean"], m[f"{treatment}_minus_{control}_ci95"]
    v = m["verdict"]
    head = anchors["headline"]
    gain = head[treatment][1] - head[control][1]
    what = {
        "confirmed": f"the interval lies above zero: {treatment} is more robust than {control} at this scale",
        "reversed": f"the interval lies below zero: {treatment} is *less* robust than {control} at this scale",
        "ruled out at this resolution": f"the interval excludes every gain of {100 * p['min_effect']:g} points or "
                                        "more, though not zero",
        "not resolved": "the interval is too wide to say",
    }[v]
    out = [f"**Verdict: {v}.** {treatment} minus {control}, robust accuracy (worst case per example of FGSM and "
           f"PGD-{'/'.join(map(str, p['eval']['steps']))}), paired over {m['pairs']} seeds: "
           f"{ci(mean, half, signed=True)} (95% t interval); {what}. SAT's ImageNet gain is {100 * gain:+.1f} "
           f"points (ResNet-50, {pct(head[control][1])} -> {pct(head[treatment][1])}); on CIFAR-10 the independent "
           f"evidence expects {anchors['cifar_expected']} ({anchors['cifar_source']})."]
    c = m["configs"]
    if treatment in c:
        out.append(f"Clean accuracy: {control} {ci(c[control]['clean_acc_mean'], c[control]['clean_acc_ci95'])}, "
                   f"{treatment} {ci(c[treatment]['clean_acc_mean'], c[treatment]['clean_acc_ci95'])} "
                   f"(paired difference {ci(c[treatment][f'clean_minus_{control}_mean'], c[treatment][f'clean_minus_{control}_ci95'], signed=True)}).")
    cells = [n for n in c if n.startswith("ReLU,")]
    if cells:
        out.append("Mechanism (ReLU forward, parametric softplus's derivative backward), paired against ReLU, "
                   "robust / clean: " + "; ".join(
                       f"{n.removeprefix('ReLU, ')}: {ci(c[n][f'robust_minus_{control}_mean'], c[n][f'robust_minus_{control}_ci95'], signed=True)}"
                       f" / {ci(c[n][f'clean_minus_{control}_mean'], c[n][f'clean_minus_{control}_ci95'], signed=True)}"
                       f" ({c[n]['seeds']} seeds, {stats.verdict(stats.Interval(c[n][f'robust_minus_{control}_mean'], c[n][f'robust_minus_{control}_ci95'], c[n]['seeds']), p['min_effect'])})"
                       for n in cells) + f". The paper (note): {anchors['ablation_note']}.")
    aa = m.get("autoattack")
    if aa:
        out.append(f"Standard AutoAttack on {aa['n']} of the images (matched clean accuracy, seed {p['seeds'][0]}): "
                   f"{control} {pct(aa[control])}, {treatment} {pct(aa[treatment])}, difference "
                   f"{ci(aa[f'{treatment}_minus_{control}_mean'], aa[f'{treatment}_minus_{control}_ci95'], signed=True)}"
                   " (normal interval over images: one seed, so it shows the evaluation's noise, not the seeds').")
    co = m["catastrophic_overfitting_runs"]
    out.append("Catastrophic overfitting (the held-out PGD accuracy falling under half its best): " +
               (f"seen in {co} run(s); see the monitor figure." if co else "not seen in any run."))
    out.append(f"Settings that differ from the paper: CIFAR-10 with a small `{p['model']['arch']}` net on "
               f"{p['data']['train_limit'] or 50000:,} images for {p['train']['epochs']} epochs instead of ImageNet "
               f"ResNet-50 for the full schedule; evaluation with PGD-{p['eval']['steps'][-1]} and its worst case "
               "(the paper: PGD up to 200 steps); label smoothing "
               f"{p['train']['label_smoothing']:g}. Compare differences between arms, not levels.")
    return " ".join(out)


TITLE = "Smooth Adversarial Training (Xie et al. 2020)"


def claims(ctx: Context) -> list:
    from ..render import Claim
    m, run_ = ctx.metrics("sat"), ctx.runs().get("sat")
    paper, sec = "Xie et al. 2020", "## " + TITLE
    head = ctx.anchors["xie"]["headline"]
    gain = head["silu"][1] - head["relu"][1]
    if m is None or run_ is None:
        return [Claim(paper, "SiLU more robust than ReLU under PGD-1 training", gain, None, section=sec, signed=True)]
    control, treatment = run_["params"]["primary"]
    c = m["configs"][treatment]
    out = [Claim(paper, f"{treatment} minus {control}: robust accuracy (ImageNet's gain; CIFAR-10 here)", gain,
                 m[f"{treatment}_minus_{control}_mean"],
                 m[f"{treatment}_minus_{control}_mean"] - m[f"{treatment}_minus_{control}_ci95"],
                 m[f"{treatment}_minus_{control}_mean"] + m[f"{treatment}_minus_{control}_ci95"],
                 f"{m['pairs']} pairs", 0.0, sec, signed=True),
           Claim(paper, f"{treatment} minus {control}: clean accuracy (no cost)", head["silu"][0] - head["relu"][0],
                 c[f"clean_minus_{control}_mean"], c[f"clean_minus_{control}_mean"] - c[f"clean_minus_{control}_ci95"],
                 c[f"clean_minus_{control}_mean"] + c[f"clean_minus_{control}_ci95"], f"{c['seeds']} pairs", None,
                 sec, signed=True)]
    return out
