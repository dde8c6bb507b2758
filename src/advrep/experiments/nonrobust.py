"""Non-robust features (Ilyas et al. 2019) on CIFAR-10: the relabelled, perturbed training sets (nrf_generate) and the
models retrained on them, tested on the original test set (nrf_train). Schemas, computation, runs, report section.

Each training image x of class y gets a new label t and a small targeted L2 PGD perturbation towards t against a
source model, so that only the perturbation (a "non-robust feature") agrees with t. D_det uses t = (y + 1) mod 10;
D_rand draws t uniformly from all ten classes (seeded), so the image's robust features carry no information about
t; D_other (t uniform over the nine others) is a labelled variant, not the paper's set. The attack is the paper's:
targeted L2 PGD with normalised steps, no random start, every step taken, and each example's best iterate (the
lowest loss towards t, the authors' library default) kept. If a model trained on (x + delta, t) classifies the
*original* test set well, the perturbations carried features that generalise.

A set is stored as the perturbation itself (float16: an L2 eps of 0.5 spreads ~0.009 per pixel, which uint8 would
round away), with the canonical indices of the source images and the new and original labels; `load` adds it back
to the verified raw images. Generation is chunked under a key of everything that defines a chunk (the source
model's weights, the images, the targets, the attack's params and code); a stopped run resumes from the finished
chunks, which are removed once the stage succeeds.

Controls: the same images and new labels without the perturbation (only the perturbation can carry the signal, so
this must stay at or below chance), both sets built from an adversarially trained source (Table 9), and an eps
sweep showing where the non-robust signal emerges at this scale.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from pydantic import Field, field_validator, model_validator

from .. import attacks, data, models, stats, store, sweep, train
from ..config import ModelConfig, OptimConfig, Stage, Strict, TrainConfig, distinct_seeds, within
from ..data import SIZES, DataError, Split

if TYPE_CHECKING:  # the report's plumbing is imported where a section runs, not by the stage
    from ..render import Context

log = store.logger("nonrobust")
SETS = Path("data/nrf")  # nrf_generate's outputs, nrf_train's inputs
RETRAINED = Path("data/nrf_train")
KINDS = {"det": "D_det", "rand": "D_rand", "other": "D_other"}


class Sweep(Strict):
    eps: list[float] = Field(default_factory=list)  # further L2 eps (the paper's eps is the headline); [] = none
    train_limit: Optional[int] = Field(None, gt=0)  # its images (the first N of the headline's subset); null: same


class GenerateParams(Stage):
    """Ilyas et al. 2019, step 1: the non-robust datasets by targeted L2 PGD on a source model."""

    source: str = "data/models/train_cifar"  # the clean source model (a directory written by models.save)
    robust_source: Optional[str] = None  # an adversarially trained model for the Table 9 control; null = skip
    train_limit: Optional[int] = Field(None, gt=0)  # seeded subset of the 50,000 training images; null = all
    sets: list[Literal["det", "rand", "other"]] = ["det", "rand"]
    eps: float = Field(0.5, gt=0)  # L2, pixels in [0, 1] (Table 6)
    step: float = Field(0.1, gt=0)  # normalised L2 step at `eps`; the sweep keeps the ratio step / eps
    steps: int = Field(100, gt=0)
    sweep: Sweep = Sweep()
    batch_size: int = Field(500, gt=0)
    chunk: int = Field(5000, gt=0)  # images per resumable chunk
    amp: bool = False  # bf16 autocast for the source model's passes where the device has native bf16 (the attack
    #   then runs ~1.9x faster on this CPU; its share of images reaching t is recorded either way)

    @model_validator(mode="after")
    def _check(self):
        within(self.train_limit, SIZES["cifar10"][0], "CIFAR-10 training images", "train_limit")
        within(self.sweep.train_limit, self.train_limit or SIZES["cifar10"][0], "images of the headline subset",
               "sweep.train_limit")
        if len(set(self.sets)) != len(self.sets) or not self.sets:
            raise ValueError(f"sets: expected distinct kinds, got {self.sets}")
        if self.eps in self.sweep.eps or len(set(self.sweep.eps)) != len(self.sweep.eps):
            raise ValueError(f"sweep.eps {self.sweep.eps} must be distinct and not repeat eps {self.eps}")
        return self


class Recipe(Strict):
    """How a model is retrained on one kind of set (Table 3: D_det without augmentation at LR 0.1, D_rand with
    augmentation at LR 0.01)."""

    train: TrainConfig
    optim: OptimConfig

    @model_validator(mode="after")
    def _milestones_inside(self):
        if any(m >= self.train.epochs for m in self.optim.milestones):
            raise ValueError(f"optim.milestones {self.optim.milestones} must lie below train.epochs")
        return self


class TrainParams(Stage):
    """Ilyas et al. 2019, step 2: fresh models trained on the non-robust sets, tested on the original test set."""

    seeds: list[int]  # the headline sets are retrained once per seed
    control_seeds: int = Field(1, gt=0)  # the first N seeds retrain the controls and robust-source sets
    sweep_seeds: int = Field(1, gt=0)  # the first N seeds retrain the sweep's sets
    model: ModelConfig
    det: Recipe  # D_det (and D_other)
    rand: Recipe  # D_rand
    controls: bool = True  # no-perturbation controls
    curve_n: int = Field(2000, gt=0)  # test images behind the per-epoch curves (the full test set at the end)
    test_limit: Optional[int] = Field(None, gt=0)
    executor: sweep.Executor = sweep.Executor()

    _seeds = field_validator("seeds")(distinct_seeds)

    @model_validator(mode="after")
    def _check(self):
        within(self.test_limit, SIZES["cifar10"][1], "CIFAR-10 test images", "test_limit")
        within(self.curve_n, self.test_limit or SIZES["cifar10"][1], "test images", "curve_n")
        within(self.control_seeds, len(self.seeds), "seeds", "control_seeds")
        within(self.sweep_seeds, len(self.seeds), "seeds", "sweep_seeds")
        return self


SECTIONS = {"nrf_generate": GenerateParams, "nrf_train": TrainParams}


# ---------------------------------------------------------------------------------------------------------------
# Computation


def targets(y: torch.Tensor, mode: str, seed: int = 0) -> torch.Tensor:
    """New labels: 'det' is (y + 1) mod 10; 'rand' uniform over all ten classes (t may equal y); 'other' uniform
    over the nine classes other than y (D_other). Seeded."""
    if mode == "det":
        return (y + 1) % 10
    if mode == "rand":
        return torch.randint(0, 10, y.shape, generator=torch.Generator().manual_seed(seed)).to(y.device)
    if mode == "other":
        return data.other_labels(y, seed)
    raise ValueError(f"unknown relabelling '{mode}', expected one of {sorted(KINDS)}")


def generate(model: nn.Module, images: Split, target: torch.Tensor, threat: attacks.Threat, steps: int, step: float,
             batch_size: int, resume: store.Resume, chunk: int, key: str, device: torch.device,
             desc: str = "generate", amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Targeted L2 PGD towards `target` for every image: every step taken, no random start, each example's best
    iterate kept (Ilyas et al. / MadryLab's `use_best`). Returns (delta as float32, success), success saying
    whether the source model classifies x + delta as the target. Each chunk of `chunk` images is kept in `resume`
    under `key` and its range as it finishes, and loaded instead of recomputed when the key matches."""
    from tqdm import tqdm

    deltas, oks = [], []
    n_chunks = (len(images) + chunk - 1) // chunk
    bar = tqdm(total=len(images), desc=desc, leave=False, disable=None, mininterval=2.0)
    for c in range(n_chunks):
        lo, hi = c * chunk, min((c + 1) * chunk, len(images))
        ck = store.key(key, lo, hi)
        got = resume.get(ck)
        if got is None:
            part_d, part_ok = [], []
            for i in range(lo, hi, batch_size):
                j = min(i + batch_size, hi)
                x = images.x[i:j].to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    r = attacks.pgd(model, x, images.y[i:j].to(device), threat, steps, step,
                                    target=target[i:j].to(device), random_start=False, best=True)
                part_d.append((r.x - x).cpu())
                part_ok.append(r.success.cpu())
                bar.update(j - i)
            # stored (and returned) as float16, so a resumed run and an uninterrupted one give the same sets
            got = resume.put(ck, {"delta": torch.cat(part_d).half(), "success": torch.cat(part_ok)})
            log.info(f"{desc}: chunk {c + 1}/{n_chunks} done, success {got['success'].float().mean():.3f}")
        else:
            bar.update(hi - lo)
            log.info(f"{desc}: chunk {c + 1}/{n_chunks} resumed from {resume.path(ck)}")
        deltas.append(got["delta"].float())
        oks.append(got["success"])
    bar.close()
    return torch.cat(deltas), torch.cat(oks)


def save(path: Path, index: torch.Tensor, label: torch.Tensor, orig_label: torch.Tensor, delta: torch.Tensor,
         success: torch.Tensor) -> None:
    """One non-robust dataset as an npz: canonical indices, new labels, original labels, float16 perturbations."""
    store.save_npz(path, index=index.numpy(), label=label.numpy(), orig_label=orig_label.numpy(),
                   delta=delta.numpy().astype(np.float16), success=success.numpy())


def load(path: Path, source: Split, perturbed: bool = True) -> Split:
    """The images of a stored dataset (source: the verified training split it indexes) with the new labels.
    perturbed=False gives the no-perturbation control: the same images and new labels, without the delta."""
    if not path.is_file():
        raise DataError(f"{path}: not found (run the nrf_generate stage: dvc repro nrf_generate)")
    try:
        with np.load(path) as z:
            index, label = torch.from_numpy(z["index"]), torch.from_numpy(z["label"]).long()
            delta = torch.from_numpy(z["delta"].astype(np.float32))
    except Exception as e:
        raise DataError(f"{path}: damaged or not a set written by nrf_generate ({type(e).__name__}: {e}); delete "
                        "it and run `dvc repro nrf_generate`") from None
    pos = {int(i): k for k, i in enumerate(source.index.tolist())}
    missing = [int(i) for i in index[:5] if int(i) not in pos]
    if missing:
        raise DataError(f"{path}: indexes training images {missing} not in the given split")
    x = source.x[torch.tensor([pos[int(i)] for i in index])]
    if perturbed:
        x = (x + delta).clamp_(0, 1)
    return Split(x, label, index)


def summary(delta: torch.Tensor, success: torch.Tensor) -> dict:
    """Attack success rate (the source classifies x + delta as t) and the distortion actually used."""
    l2 = delta.flatten(1).norm(dim=1)
    return {"n": len(delta), "success_rate": success.float().mean().item(), "l2_mean": l2.mean().item(),
            "l2_max": l2.max().item()}


def file_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def plan(cfg: GenerateParams) -> list[dict]:
    """Every set to build: its name (file stem), kind, source, eps, step and image count."""
    out = [{"name": k, "kind": k, "source": cfg.source, "eps": cfg.eps, "group": "headline"} for k in cfg.sets]
    if cfg.robust_source is not None:
        out += [{"name": f"{k}_robust", "kind": k, "source": cfg.robust_source, "eps": cfg.eps, "group": "robust"}
                for k in cfg.sets]
    out += [{"name": f"{k}_eps{e:g}", "kind": k, "source": cfg.source, "eps": e, "group": "sweep"}
            for e in cfg.sweep.eps for k in cfg.sets if k in ("det", "rand")]
    for s in out:
        s["step"] = cfg.step * s["eps"] / cfg.eps
        s["n"] = cfg.sweep.train_limit if s["group"] == "sweep" and cfg.sweep.train_limit else None
    return out


# ---------------------------------------------------------------------------------------------------------------
# Runs


def run_generate(section: str, cfg: GenerateParams) -> None:
    """nrf_generate: build every set of `plan`; write data/nrf/<name>.npz, reports/metrics/nrf_generate.json,
    reports/figures/nrf_examples.png."""
    from ..figures import example_grid

    t0 = time.time()
    device = train.pick_device(cfg.device)
    if device.type == "cpu":
        train.tune_cpu_allocator()
    trainset = data.subset(data.load(Path("data/raw/cifar10.npz"), "train"), cfg.train_limit, cfg.seed)
    images = store.tensor_hash(trainset.x, trainset.y)
    code = store.code_hash("advrep.attacks", "advrep.experiments.nonrobust")
    resume = store.Resume("nrf_generate")
    metrics, sources = {}, {}
    for s in plan(cfg):
        if s["source"] not in sources:
            sources[s["source"]] = (models.load(s["source"], device), file_hash(Path(s["source"]) / "model.pt"))
        src, src_hash = sources[s["source"]]
        part = trainset if s["n"] is None else Split(trainset.x[:s["n"]], trainset.y[:s["n"]], trainset.index[:s["n"]])
        target = targets(part.y, s["kind"], cfg.seed)
        amp = cfg.amp and train.bf16_native(device)
        key = store.key("nrf", src_hash, images, len(part), store.tensor_hash(target), s["eps"], s["step"],
                        cfg.steps, amp, code)
        log.info(f"{s['name']}: targeted L2 PGD (eps {s['eps']:g}, {cfg.steps} steps of {s['step']:g}, best "
                 f"iterate) towards {KINDS[s['kind']]} labels on {len(part)} images against {s['source']}")
        t = time.time()
        delta, ok = generate(src, part, target, attacks.L2(s["eps"]), cfg.steps, s["step"], cfg.batch_size, resume,
                             cfg.chunk, key, device, desc=s["name"], amp=amp)
        save(SETS / f"{s['name']}.npz", part.index, target, part.y, delta, ok)
        metrics[s["name"]] = {**summary(delta, ok), "eps": s["eps"], "kind": s["kind"], "group": s["group"],
                              "seconds": round(time.time() - t, 1)}
        log.info(f"{s['name']}: {100 * metrics[s['name']]['success_rate']:.1f}% classified as t by the source, "
                 f"mean L2 {metrics[s['name']]['l2_mean']:.3f} ({metrics[s['name']]['seconds']:.0f}s)")
        if s["name"] == cfg.sets[0]:
            src_model = sources[cfg.source][0]
            x = part.x[:8]
            example_grid(x, (x + delta[:8]).clamp(0, 1), part.y[:8], target[:8], src_model,
                         "reports/figures/nrf_examples.png",
                         f"{KINDS[s['kind']]}: originals (label -> source's prediction), non-robust versions "
                         f"(t = new label), L2 eps {s['eps']:g}", classes=data.CLASSES["cifar10"])
    store.publish("nrf_generate", cfg, t0, str(device), metrics=metrics, out=SETS, record_metrics=True)
    resume.clear()


def retrain_plan(gen: dict, cfg: TrainParams) -> list[dict]:
    """The retraining runs: (row name, set file, kind, perturbed, group, eps, seeds), from nrf_generate's run."""
    out = []
    for name, g in gen.items():
        label = KINDS[g["kind"]]
        group = g["group"]
        row = {"headline": label, "robust": f"{label} from robust source", "sweep": f"{label} at eps {g['eps']:g}"}
        seeds = {"headline": cfg.seeds, "robust": cfg.seeds[:cfg.control_seeds],
                 "sweep": cfg.seeds[:cfg.sweep_seeds]}[group]
        out.append({"set": row[group], "file": name, "kind": g["kind"], "perturbed": True, "group": group,
                    "eps": g["eps"], "seeds": list(seeds)})
        if group == "headline" and cfg.controls:
            out.append({"set": f"{label} without perturbation", "file": name, "kind": g["kind"], "perturbed": False,
                        "group": "control", "eps": 0.0, "seeds": list(cfg.seeds[:cfg.control_seeds])})
    return out


def _test_sets(cfg: TrainParams):
    raw = Path("data/raw/cifar10.npz")
    test = data.load(raw, "test", limit=cfg.test_limit)
    curve = Split(test.x[:cfg.curve_n], test.y[:cfg.curve_n], test.index[:cfg.curve_n])
    return data.load(raw, "train"), test, curve


def retrain(cfg: TrainParams, run_: dict, seed: int) -> dict:
    """One retraining: a fresh model on one set, tested on the original test set and on (y + 1) mod 10."""
    device = train.pick_device(cfg.device)
    source, test, curve = _test_sets(cfg)
    ds = load(SETS / f"{run_['file']}.npz", source, run_["perturbed"])
    recipe = cfg.det if run_["kind"] in ("det", "other") else cfg.rand
    model, history = train.train_model(cfg.model.spec("cifar10"), ds, curve, recipe.train, recipe.optim, seed, device,
                                       Path("data/checkpoints") / f"nrf_{run_['file']}_{run_['perturbed']}_{seed}.pt",
                                       desc=f"{run_['set']} seed {seed}")
    shifted = Split(test.x, (test.y + 1) % 10, test.index)  # what a model of the robust features alone predicts
    ev = train.evaluate(model, test, recipe.train.eval_batch_size, device)
    return {"state": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history,
            "test_acc": ev["acc"], "test_acc_shifted": train.evaluate(model, shifted, recipe.train.eval_batch_size,
                                                                      device)["acc"],
            "train_acc": train.evaluate(model, ds, recipe.train.eval_batch_size, device)["acc"],
            "train_loss": history[-1]["train_loss"]}


def run_train(section: str, cfg: TrainParams) -> None:
    """nrf_train: every run of `retrain_plan`, once per seed; metrics as means with 95% intervals over seeds."""
    t0 = time.time()
    device = train.pick_device(cfg.device)
    gen_path = Path("reports/metrics/nrf_generate.json")
    if not gen_path.is_file():
        raise DataError(f"{gen_path}: not found (run the nrf_generate stage first)")
    gen = store.load_json(gen_path)
    code = store.code_hash("advrep.train", "advrep.models", "advrep.experiments.nonrobust", "advrep.data")
    defining = cfg.model_dump(exclude={"executor", "seeds", "control_seeds", "sweep_seeds", "controls"})
    runs, units, meta = retrain_plan(gen, cfg), [], []
    for r in runs:
        fh = file_hash(SETS / f"{r['file']}.npz") if (SETS / f"{r['file']}.npz").is_file() else "missing"
        for seed in r["seeds"]:
            units.append(sweep.Unit(store.key("nrf_train", defining, fh, r["perturbed"], r["kind"], seed, str(device),
                                              code), retrain, (cfg, r, seed), name=f"{r['set']} seed {seed}"))
            meta.append((r, seed))
    log.info(f"nrf_train: {len(units)} retrainings of `{cfg.model.arch}` on {len(runs)} sets")
    results = sweep.run("nrf_train", units, cfg.executor)
    rows, curves = [], []
    for (r, seed), res in zip(meta, results):
        model = models.build(cfg.model.spec("cifar10"))
        model.load_state_dict(res["state"])
        models.save(model, RETRAINED / r["set"].replace(" ", "_").replace("'", "") / f"seed{seed}")
        rows.append({"set": r["set"], "kind": r["kind"], "group": r["group"], "eps": r["eps"], "seed": seed,
                     "train_size": int(gen[r["file"]]["n"]), "test_acc": res["test_acc"],
                     "test_acc_shifted": res["test_acc_shifted"], "train_acc": res["train_acc"],
                     "train_loss": res["train_loss"]})
        curves += [{"set": r["set"], "seed": seed, **h} for h in res["history"]]
        log.info(f"{r['set']} seed {seed}: original test accuracy {res['test_acc']:.4f}, on (y+1) mod 10 "
                 f"{res['test_acc_shifted']:.4f}, train accuracy {res['train_acc']:.4f}")
    table = pd.DataFrame(rows)
    n_test = cfg.test_limit or SIZES["cifar10"][1]
    metrics = summarise(table, gen, n_test)
    store.publish("nrf_train", cfg, t0, str(device), metrics=metrics, tables={"nrf_train": table},
                  plots={"nrf_curves": pd.DataFrame(curves)}, out=RETRAINED, record_metrics=True)
    store.Resume("nrf_train").clear()


METRIC = {("det", "headline"): "d_det_acc", ("rand", "headline"): "d_rand_acc",
          ("det", "control"): "d_det_control_acc", ("rand", "control"): "d_rand_control_acc",
          ("det", "robust"): "d_det_robust_source_acc", ("rand", "robust"): "d_rand_robust_source_acc",
          ("other", "headline"): "d_other_acc", ("other", "control"): "d_other_control_acc",
          ("other", "robust"): "d_other_robust_source_acc"}


def summarise(table: pd.DataFrame, gen: dict, n_test: int) -> dict:
    """The top-level keys (means over seeds, fractions), their 95% half-widths, the sweep, per-set details."""
    out: dict = {"n": n_test}
    headline_eps = next((g["eps"] for g in gen.values() if g["group"] == "headline"), None)
    out["eps"] = headline_eps
    for (kind, group), g in table.groupby(["kind", "group"], sort=False):
        if group == "sweep" or (kind, group) not in METRIC:
            continue
        iv = stats.mean_ci(g["test_acc"])
        out[METRIC[(kind, group)]] = iv.mean
        out[METRIC[(kind, group)].replace("_acc", "_ci95")] = iv.half
    sweep_ = {}
    for e in sorted({g["eps"] for g in gen.values()}):
        cell = {}
        for kind in ("det", "rand"):
            g = table[(table["kind"] == kind) & ((table["group"] == "sweep") & np.isclose(table["eps"], e)
                                                 | (table["group"] == "headline") & np.isclose(table["eps"], e))]
            if len(g):
                cell[METRIC[(kind, "headline")]] = float(g["test_acc"].mean())
            c = out.get(METRIC[(kind, "control")])
            if c is not None:
                cell[METRIC[(kind, "control")]] = c  # the control carries no perturbation: the same at every eps
        if cell:
            sweep_[f"{e:g}" if e != int(e) else f"{e:.1f}"] = cell
    out["sweep"] = sweep_
    out["sets"] = {s: {"seeds": len(g), "test_acc_mean": float(g["test_acc"].mean()),
                       "test_acc_shifted_mean": float(g["test_acc_shifted"].mean()),
                       "train_acc_mean": float(g["train_acc"].mean())}
                   for s, g in table.groupby("set", sort=False)}
    return out


# ---------------------------------------------------------------------------------------------------------------
# Report


def section(ctx: Context) -> str:
    import matplotlib.pyplot as plt

    from ..render import PAPER_RUN, ci, pct, table
    title = f"## {TITLE}\n\n"
    gen, tab, curves, m = (ctx.metrics("nrf_generate"), ctx.table("nrf_train"), ctx.plot("nrf_curves"),
                           ctx.metrics("nrf_train"))
    runs = ctx.runs()
    if gen is None or tab is None or curves is None or m is None or "nrf_train" not in runs:
        return title + "Not run yet.\n"
    a = ctx.anchors["ilyas"]
    pg, pt = runs["nrf_generate"]["params"], runs["nrf_train"]["params"]
    paper = {"D_det": a["test_acc"]["D_det"], "D_rand": a["test_acc"]["D_rand"],
             "D_det from robust source": a["robust_source"]["D_det"],
             "D_rand from robust source": a["robust_source"]["D_rand"]}
    file_of = {}
    for name, g in gen.items():
        label = KINDS[g["kind"]]
        file_of[{"headline": label, "robust": f"{label} from robust source",
                 "sweep": f"{label} at eps {g['eps']:g}"}[g["group"]]] = name
    rows = []
    for s, g in tab.groupby("set", sort=False):
        iv = stats.mean_ci(g["test_acc"])
        gg = gen.get(file_of.get(s, ""), {})
        kind = g["kind"].iloc[0]
        rows.append({"training set": s, "seeds": len(g), "original test acc (ours)": ci(iv.mean, iv.half),
                     "paper": pct(paper.get(s)),
                     "on (y+1) mod 10": pct(g["test_acc_shifted"].mean()) + (
                         f" / paper {pct(a['det_shifted_acc'])}" if s == "D_det" else ""),
                     "train acc": pct(g["train_acc"].mean()),
                     "source says t": pct(gg.get("success_rate")) if gg else "–",
                     "L2 eps / mean L2 used": f"{gg['eps']:g} / {gg['l2_mean']:.3f}" if gg else "0 / 0",
                     "images": f"{int(g['train_size'].iloc[0]):,}", "kind": kind})
    for r in rows:
        r.pop("kind")

    # training curves of every set (mean over seeds), on the original test images
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    for i, (s, g) in enumerate(curves.groupby("set", sort=False)):
        mm = g.groupby("epoch")["test_acc"].mean()
        ls = "-" if " at eps " not in s else ":"
        ax.plot(mm.index, 100 * mm.values, marker="o", ms=2.5, ls=ls, color=f"C{i % 10}", label=s)
    ax.axhline(10, color="k", ls="--", lw=0.8, label="chance (10%)")
    ax.set(xlabel="epoch", ylabel=f"accuracy on {pt['curve_n']:,} original test images (%)",
           title="Retrained models on the original test set, per epoch (mean over seeds)")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(alpha=0.3)
    img_curves = ctx.figure(fig, "nrf_curves")

    # eps sweep
    sw = m.get("sweep", {})
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    eps = sorted(float(e) for e in sw)
    for key, label, st in (("d_det_acc", "D_det", "o-"), ("d_rand_acc", "D_rand", "s-")):
        xs = [e for e in eps if key in sw[_ek(e, sw)]]
        ax.plot(xs, [100 * sw[_ek(e, sw)][key] for e in xs], st, label=label)
    for key, label, c in (("d_det_control_acc", "D_det without perturbation", "C0"),
                          ("d_rand_control_acc", "D_rand without perturbation", "C1")):
        if key in m:
            ax.axhline(100 * m[key], color=c, ls="--", lw=1, label=label)
    ax.axhline(10, color="k", ls=":", lw=0.8, label="chance")
    if m.get("eps") is not None:
        ax.axvline(m["eps"], color="grey", lw=0.8)
        ax.annotate("paper's eps", (m["eps"], 0.5), xycoords=("data", "axes fraction"), fontsize=7, rotation=90,
                    ha="right", va="center")
    ax.set(xlabel="L2 eps of the perturbation (pixels in [0, 1])", ylabel="original test accuracy (%)",
           title="Where the non-robust signal emerges at this scale", ylim=(0, None))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    img_sweep = ctx.figure(fig, "nrf_sweep")
    return (
        title +
        f"Each training image of a seeded subset is pushed by targeted L2 PGD against the clean source model "
        f"(`{pg['source']}`) towards a new label t and relabelled t: D_det uses t = (y+1) mod 10, D_rand draws t "
        "uniformly from all ten classes (so the image's robust features say nothing about t). The attack is the "
        f"paper's: {pg['steps']} normalised steps, no random start, each example's best iterate. A fresh "
        f"`{pt['model']['arch']}` trained on these sets sees images that look like class y but carry label t; if "
        "it classifies the *original* test set well, the perturbations carried features that generalise: "
        "non-robust features. Accuracies are on the full original test set, means with 95% t intervals over "
        "seeds.\n\n"
        f"{table(rows)}\n\n{reading(m, gen, pg, pt, a)}\n\n![training curves]({img_curves})\n\n"
        f"![eps sweep]({img_sweep})\n\n![examples](figures/nrf_examples.png)\n\n"
        f"{differences(pg, pt, a)}\n\n"
        f"**Paper profile.** `profiles/paper.yaml` sets ResNet-50, all 50,000 images, 100 PGD steps at L2 eps 0.5 "
        f"and the paper's retraining recipe. Run: {PAPER_RUN}.\n"
    )


def _ek(e: float, sw: dict) -> str:
    return next(k for k in sw if math.isclose(float(k), e))


def reading(m: dict, gen: dict, pg: dict, pt: dict, a: dict) -> str:
    """Claims the intervals support, computed."""
    from ..render import ci, pct
    out = ["**Reading.**"]
    eps = m.get("eps")
    for kind, label in (("det", "D_det"), ("rand", "D_rand")):
        key, ctl = f"d_{kind}_acc", f"d_{kind}_control_acc"
        if key not in m:
            continue
        acc, half = m[key], m.get(f"d_{kind}_ci95")
        lo = acc - (half if half == half and half is not None else 0.0)
        above_chance = half == half and half is not None and lo > 0.10
        text = (f"At the paper's eps {eps:g}, {label} gives {ci(acc, half)} on the original test set (paper "
                f"{pct(a['test_acc'][label])}): ")
        text += ("its interval lies above chance (10%), so the perturbations carried features that generalise."
                 if above_chance else "its interval does not exclude chance (10%): no non-robust signal is "
                 "resolved at this eps and scale.")
        if ctl in m:
            text += f" Without the perturbation the same images and labels give {pct(m[ctl])}."
        out.append(text)
        sw = m.get("sweep", {})
        emerged = [(float(e), c[key]) for e, c in sw.items() if key in c and ctl in m
                   and c[key] >= m[ctl] + 0.10 and c[key] >= 0.25]
        if emerged:
            e, v = min(emerged)
            out.append(f"In the eps sweep {label} first reaches 25% and 10 points above its control at L2 eps "
                       f"{e:g} ({pct(v)}).")
        elif sw:
            best = max(((float(e), c[key]) for e, c in sw.items() if key in c), key=lambda t: t[1], default=None)
            if best:
                out.append(f"No eps of the sweep brings {label} to 25% and 10 points above its control (best: "
                           f"{pct(best[1])} at eps {best[0]:g}).")
    rob = [(k, f"d_{k}_robust_source_acc") for k in ("det", "rand")]
    if any(r in m for _, r in rob):
        out.append("From the adversarially trained source (Table 9: D_rand "
                   f"{pct(a['robust_source']['D_rand'])}, D_det {pct(a['robust_source']['D_det'])}): " + ", ".join(
                       f"{KINDS[k]} {pct(m[r])}" for k, r in rob if r in m) + ".")
    sh = m.get("sets", {}).get("D_det", {}).get("test_acc_shifted_mean")
    if sh is not None:
        out.append(f"The D_det models score {pct(sh)} on the test set relabelled (y+1) mod 10 (paper "
                   f"{pct(a['det_shifted_acc'])}): the higher this is, the more they learned the robust features "
                   "(the label shift) instead of the perturbations.")
    return " ".join(out)


def differences(pg: dict, pt: dict, a: dict) -> str:
    """Every setting that differs from the paper's (Table 3 / Table 6), from the run records."""
    rt = a["retrain"]
    d, r = pt["det"], pt["rand"]
    items = [
        f"training images: {pg['train_limit'] or 50000:,} (paper: all 50,000)",
        f"PGD steps: {pg['steps']} (paper: {a['pgd']['steps']})",
        f"source model: `{pg['source']}`, a small CIFAR net (paper: a standard ResNet-50)",
        f"retrained model: `{pt['model']['arch']}` {pt['model'].get('widths')} (paper: ResNet-50)",
        f"D_det recipe: {d['optim']['name'].upper()} LR {d['optim']['lr']:g} ({d['optim']['schedule']}), batch "
        f"{d['train']['batch_size']}, {d['train']['epochs']} epochs, augmentation "
        f"{'on' if d['train']['augment']['crop'] or d['train']['augment']['flip'] else 'off'} (paper: LR "
        f"{rt['D_det']['lr']:g}, augmentation {'on' if rt['D_det']['augmentation'] else 'off'}, batch "
        f"{rt['batch']})",
        f"D_rand recipe: {r['optim']['name'].upper()} LR {r['optim']['lr']:g} ({r['optim']['schedule']}), batch "
        f"{r['train']['batch_size']}, {r['train']['epochs']} epochs, augmentation "
        f"{'on' if r['train']['augment']['crop'] or r['train']['augment']['flip'] else 'off'} (paper: LR "
        f"{rt['D_rand']['lr']:g}, augmentation {'on' if rt['D_rand']['augmentation'] else 'off'}, batch "
        f"{rt['batch']})",
    ]
    if pg.get("robust_source"):
        items.append(f"robust source: `{pg['robust_source']}`, the SAT stage's single-step L-inf adversarially "
                     "trained small net (paper: an L2-robust ResNet-50)")
    return "**Settings that differ from the paper.** " + "; ".join(items) + "."


TITLE = "Non-robust features (Ilyas et al. 2019)"


def claims(ctx: Context) -> list:
    from ..render import Claim, wilson
    m = ctx.metrics("nrf_train")
    paper, sec = "Ilyas et al. 2019", "## " + TITLE
    a = ctx.anchors["ilyas"]
    rows = [("d_det_acc", "D_det: accuracy on the original test set", a["test_acc"]["D_det"], 0.10),
            ("d_rand_acc", "D_rand: accuracy on the original test set", a["test_acc"]["D_rand"], 0.10),
            ("d_rand_robust_source_acc", "D_rand from a robust source", a["robust_source"]["D_rand"], 0.10),
            ("d_det_robust_source_acc", "D_det from a robust source (low)", a["robust_source"]["D_det"], None)]
    if m is None:
        return [Claim(paper, what, pub, None, section=sec) for _, what, pub, _ in rows]
    runs = ctx.runs().get("nrf_train", {}).get("params", {})
    out = []
    for key, what, pub, null in rows:
        v = m.get(key)
        half = m.get(key.replace("_acc", "_ci95"))
        if v is None:
            out.append(Claim(paper, what, pub, None, section=sec))
            continue
        if half is not None and half == half:
            lo, hi, n = v - half, v + half, f"{len(runs.get('seeds', [])) or '?'} seeds"
        else:
            lo, hi = wilson(v, m["n"])
            n = f"1 seed, n={m['n']:,}"
        if key == "d_det_robust_source_acc":
            null = m.get("d_det_acc")  # the claim: far below what the clean source gives
        out.append(Claim(paper, what + f" (L2 eps {m['eps']:g})", pub, v, lo, hi, n, null, sec))
    return out
