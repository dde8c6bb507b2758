"""Evaluation: a list of attacks run over their eps on the same images, as one tidy table with its sanity flags.

`evaluate` is what every stage calls. Each `AttackSpec` runs at each of its eps; a slow attack (AutoAttack, the
gradient-free one) runs on a subset drawn so that its clean accuracy matches the full set's; per example, the
worst case over every attack at an eps is a row of its own. Every row carries its n. `sanity_flags` reads the table
for the warning signs listed in Carlini et al. 2019, "On Evaluating Adversarial Robustness" (section 5 and
appendix), each with what it suggests.

AutoAttack means the standard version of Croce & Hein's own code (`attacks.autoattack`); torchattacks' lighter
port is the kind `autoattack_lite`, under its own name.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd
import torch
import torch.nn as nn

from . import attacks as A
from . import store

log = store.logger("evaluate")

KINDS = ("fgsm", "pgd", "autoattack", "autoattack_lite", "gradfree", "transfer", "bpda", "eot", "autoattack_bpda")
WHITE_BOX = ("fgsm", "pgd", "autoattack", "autoattack_lite")  # attacks that follow the model's own gradient
ADAPTIVE = ("transfer", "gradfree", "bpda", "eot", "autoattack_bpda")  # attacks that do not trust it
WORST = "worst case"  # per example, over the attacks that ran on every image
WORST_ALL = "worst case, slow attacks included"  # over every attack, on the subset the slow ones ran on


@dataclass(frozen=True)
class AttackSpec:
    """One attack, independent of eps. `step_ratio` sets the step as step_ratio * eps / steps (Madry's 2.5)."""

    name: str
    kind: str = "pgd"
    norm: str = "linf"
    steps: int = 20
    step_ratio: float = 2.5
    restarts: int = 1
    loss: str = "ce"
    random_start: bool = True
    samples: tuple = ((10**9, 100),)  # gradfree: (until_step, samples per step and example) schedule
    sigma: float = 0.0  # gradfree: sampling scale in pixels (0: eps, Tramer et al.'s 8/255 at eps 8/255)
    surrogate: Optional[nn.Module] = field(default=None, compare=False, repr=False)  # transfer: attacked model
    via: Optional[nn.Module] = field(default=None, compare=False, repr=False)  # bpda / eot: gradients from this
    max_n: Optional[int] = None  # run on a subset of this many images, drawn to keep the clean accuracy
    slow: bool = False  # `evaluate` runs it at the short list `slow_eps` only
    eps: Optional[tuple[float, ...]] = None  # its own eps grid, in place of the evaluation's (e.g. FGSM's table)
    parts: Optional[tuple[str, ...]] = None  # autoattack kinds: a subset of the standard four (None: all four)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"attack '{self.name}': unknown kind '{self.kind}', expected one of {KINDS}")
        if self.norm not in A.THREATS:
            raise ValueError(f"attack '{self.name}': unknown norm '{self.norm}', expected one of {sorted(A.THREATS)}")
        if self.kind == "transfer" and self.surrogate is None:
            raise ValueError(f"attack '{self.name}': a transfer attack needs a surrogate model")
        if self.kind in ("bpda", "eot", "autoattack_bpda") and self.via is None:
            raise ValueError(f"attack '{self.name}': a {self.kind} attack needs the module to take gradients from "
                             "(attacks.with_bpda, or an EOT wrapper)")
        if self.steps < 1 or self.restarts < 1 or self.step_ratio <= 0:
            raise ValueError(f"attack '{self.name}': steps, restarts and step_ratio must be positive")

    @property
    def described(self) -> str:
        """The name with what it runs, for tables: 'PGD-20 (20 steps x 1 restart)'."""
        return self.name


def run_attack(spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
               seed: int = 0) -> torch.Tensor:
    """Adversarial examples for `model` under `spec` at `eps` (a batch)."""
    threat = A.threat(spec.norm, eps)
    if eps == 0:
        return x.clone()
    if spec.kind == "fgsm":
        if spec.norm != "linf":
            raise ValueError(f"attack '{spec.name}': FGSM is an L-inf attack")
        return A.fgsm(model, x, y, eps, loss=spec.loss).x
    if spec.kind == "autoattack":
        return A.autoattack(model, x, y, eps, spec.norm, seed=seed, parts=spec.parts)
    if spec.kind == "autoattack_bpda":  # the standard four, their gradients through the BPDA surrogate: the
        # BPDA module's value is the model's own, so AutoAttack's success checks and Square's queries see the model
        return A.autoattack(spec.via, x, y, eps, spec.norm, seed=seed, parts=spec.parts)
    if spec.kind == "autoattack_lite":
        return A.autoattack_lite(model, x, y, eps, spec.norm, seed=seed)
    step = spec.step_ratio * eps / spec.steps
    kw = dict(restarts=spec.restarts, random_start=spec.random_start, loss=spec.loss)
    if spec.kind == "pgd":  # early stop: a broken example stays broken, and the rest get the compute
        return A.pgd(model, x, y, threat, spec.steps, step, early_stop=True, **kw).x
    if spec.kind in ("bpda", "eot", "transfer"):  # gradients from elsewhere, success and best iterate judged here
        src = spec.surrogate if spec.kind == "transfer" else spec.via
        return A.pgd(src, x, y, threat, spec.steps, step, early_stop=True, best=True, judge=model, **kw).x
    return A.gradient_free(model, x, y, threat, spec.steps, step, spec.sigma or eps, spec.samples).x  # gradfree


def matched_subset(clean_ok: torch.Tensor, m: int, seed: int = 0) -> torch.Tensor:
    """Indices of m examples (sorted) whose clean accuracy matches the whole set's: round(m * acc) drawn from the
    correctly classified examples and the rest from the others, each by a seeded permutation. A slow attack run
    on them measures the same population as the fast ones."""
    n = len(clean_ok)
    if m >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    good, bad = clean_ok.nonzero().squeeze(1).cpu(), (~clean_ok).nonzero().squeeze(1).cpu()
    k = min(len(good), max(0, round(m * len(good) / n)))
    k = max(k, m - len(bad))
    pick = torch.cat([good[torch.randperm(len(good), generator=g)[:k]], bad[torch.randperm(len(bad), generator=g)[:m - k]]])
    return pick.sort().values


@dataclass
class Evaluation:
    table: pd.DataFrame  # one row per (attack, eps), and a worst-case row per eps; see `evaluate`
    flags: pd.DataFrame  # Carlini et al.'s sanity flags of that table, see `sanity_flags`
    correct: dict = field(default_factory=dict)  # (attack, eps) -> (indices into x, bool correct per index)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with A.eval_mode(model):
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, specs: list[AttackSpec], eps: list[float], *,
             slow_eps: list[float] = (), large_eps: Optional[float] = None, batch_size: int = 500,
             seed: Optional[int] = None, worst: bool = True, worst_n: int = 0,
             subset_ok: Optional[torch.Tensor] = None) -> Evaluation:
    """Every attack of `specs`, in order, on the same images: each over `eps` (a spec's own `eps` where it has one;
    slow specs over `slow_eps` only; a spec with max_n on its matched subset), then, with `worst`, one row per eps
    for the worst case per example over every attack run there (on the images they all ran on), and the sanity
    flags of the table, with `large_eps` the eps at which any working attack reaches ~0%. `seed` seeds torch
    first, so random starts repeat. The slow attacks' worst case covers the images of every attack run on at
    least `worst_n` of them; an attack on fewer (its subset drawn inside theirs) counts on the images it ran on.
    `subset_ok`: the clean correctness the subsets are matched on (default: this model's); pass a reference
    model's so that every model of a paired comparison meets the slow attacks on the same images."""
    if seed is not None:
        torch.manual_seed(seed)
    clean_ok = predict(model, x, batch_size) == y  # one clean pass, shared by every attack
    rows, correct = [], {}
    for spec in specs:
        grid = list(spec.eps) if spec.eps is not None else list(slow_eps if spec.slow else eps)
        idx = (torch.arange(len(x)) if spec.max_n is None else
               matched_subset(clean_ok if subset_ok is None else subset_ok.to(clean_ok.device), spec.max_n, seed or 0))
        idx = idx.to(x.device)
        xs, ys, cs = x[idx], y[idx], clean_ok[idx]
        threat_cls = A.THREATS[spec.norm]
        for e in grid:
            t = time.time()
            parts = [run_attack(spec, model, xs[i:i + batch_size], ys[i:i + batch_size], e, seed or 0)
                     for i in range(0, len(xs), batch_size)]
            xa = torch.cat(parts)
            ok = predict(model, xa, batch_size) == ys
            dist = threat_cls(e).norm(xa - xs)
            correct[(spec.name, e)] = (idx, ok)
            log.info(f"{spec.name} at eps {e:g} on {len(xs)} images: robust {ok.float().mean().item():.3f} "
                     f"({time.time() - t:.1f}s)")
            rows.append(_row(spec.name, spec.kind, spec.norm, e, spec.steps, spec.restarts, spec.loss, cs, ok,
                             dist))
    if worst:
        rows += _worst_rows(rows, correct, clean_ok, worst_n)
    table = pd.DataFrame(rows)
    big = None if large_eps is None else {s.norm: large_eps for s in specs}
    return Evaluation(table, sanity_flags(table, large_eps=big), correct)


def _row(name, kind, norm, eps, steps, restarts, loss, clean_ok, ok, dist=None) -> dict:
    broken = clean_ok & ~ok
    return {"attack": name, "kind": kind, "norm": norm, "eps": eps, "steps": steps, "restarts": restarts,
            "loss": loss, "n": len(ok), "clean_acc": clean_ok.float().mean().item(),
            "robust_acc": ok.float().mean().item(),
            "success_rate": (broken.sum() / clean_ok.sum().clamp_min(1)).item(),
            "mean_distortion": dist[broken].mean().item() if dist is not None and broken.any() else 0.0,
            "max_distortion": dist.max().item() if dist is not None and len(dist) else 0.0}


def _worst_rows(rows: list[dict], correct: dict, clean_ok: torch.Tensor, worst_n: int = 0) -> list[dict]:
    """Per eps > 0 with two or more attacks: correct only where every attack left the example correct. One row over
    the attacks that ran on every image (`WORST`, n = all images), and, where slower attacks ran on a subset, one
    over all attacks (`WORST_ALL`) on the images every attack on at least `worst_n` images ran on, each smaller
    attack counted on the images it ran on (see `common_worst`)."""
    out = []
    n_all = len(clean_ok)
    for e in sorted({r["eps"] for r in rows}):
        runs = [v for (name, ee), v in correct.items() if ee == e]
        if e == 0 or len(runs) < 2:
            continue
        full = [r for r in runs if len(r[0]) == n_all]
        groups = [(WORST, full)] if len(full) >= 2 else []
        if len(full) < len(runs):
            groups.append((WORST_ALL, runs))
        for label, group in groups:
            common, ok = common_worst(group, worst_n)
            out.append(_row(label, "worst", rows[0]["norm"], e, 0, 0, "-", clean_ok.cpu()[common], ok))
    return out


def common_worst(runs: list[tuple[torch.Tensor, torch.Tensor]], min_n: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The worst case per example over attack runs, each (indices, correct per index): (indices, correct) on the
    images that every run on at least `min_n` images covers (all runs' common images if none is that large),
    each image correct only if every run that covered it left it correct. Slow attacks' subsets are drawn inside
    one another (`matched_subset`), so a small one does not shrink the comparison to its size."""
    sets = [set(idx.tolist()) for idx, _ in runs]
    common = sorted(set.intersection(*([s for s in sets if len(s) >= min_n] or sets)))
    ok = {i: True for i in common}
    for idx, o in runs:
        for i, v in zip(idx.tolist(), o.cpu().tolist()):
            if i in ok:
                ok[i] = ok[i] and v
    return torch.tensor(common, dtype=torch.long), torch.tensor([ok[i] for i in common], dtype=torch.bool)


def robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, specs: list[AttackSpec], eps_list: list[float],
               batch_size: int = 500) -> pd.DataFrame:
    """One row per (attack, eps) (no worst-case rows): clean and robust accuracy, success rate, distortion used."""
    return evaluate(model, x, y, specs, eps_list, batch_size=batch_size, worst=False).table


# ---------------------------------------------------------------------------------------------------------------
# Sanity flags (Carlini et al. 2019)


def _tol(p: float, n: int) -> float:
    """Two standard errors of an accuracy p over n examples, at least 2 points: differences below are noise."""
    return max(0.02, 2 * math.sqrt(max(p * (1 - p), 1e-4) / max(n, 1)))


def sanity_flags(df: pd.DataFrame, large_eps: Optional[dict[str, float]] = None) -> pd.DataFrame:
    """The warning signs of a flawed evaluation, as a table: flag, triggered, detail, suggests.

    large_eps: per norm, an eps so large that any working attack must reach ~0% (e.g. {'linf': 0.5});
    the check uses the largest eps in the table at or above it.
    """
    out = []
    if "kind" in df:
        df = df[df["kind"] != "worst"]  # the worst case is not an attack of its own

    def add(flag, triggered, detail, suggests):
        out.append({"flag": flag, "triggered": bool(triggered), "detail": detail, "suggests": suggests})

    # 1. accuracy not monotone in eps (FGSM excepted: one fixed-size step overshoots at large eps by design)
    bad = []
    for name, g in df[df["kind"] != "fgsm"].groupby("attack"):
        g = g.sort_values("eps")
        acc = g["robust_acc"].tolist()
        for (e0, a0), (e1, a1) in zip(zip(g["eps"], acc), list(zip(g["eps"], acc))[1:]):
            if a1 > a0 + _tol(a0, int(g["n"].iloc[0])):
                bad.append(f"{name}: {100 * a0:.1f}% at eps {e0:g} -> {100 * a1:.1f}% at eps {e1:g}")
    add("accuracy rises with eps", bad, "; ".join(bad) or "robust accuracy falls or stays as eps grows",
        "a stronger attack finds fewer adversarial examples: its optimisation fails (masked or noisy gradients, "
        "too few steps, bad step size)")

    # 2. not near zero at a very large eps
    if large_eps:
        bad = []
        for (name, norm), g in df[df["kind"].isin(["pgd", "autoattack", "autoattack_lite", "gradfree"])].groupby(
                ["attack", "norm"]):
            big = g[g["eps"] >= large_eps.get(norm, math.inf)]
            if len(big) and big["robust_acc"].min() > 0.05:
                row = big.sort_values("eps").iloc[-1]
                bad.append(f"{name}: {100 * row.robust_acc:.1f}% at eps {row.eps:g}")
        add("accuracy not ~0 at a huge eps", bad, "; ".join(bad) or "every attack reaches ~0% at the largest eps",
            "an attack allowed to change the image entirely should always succeed; if it does not, its gradients "
            "are masked or the attack is broken")

    # 3. single-step beats iterative at the same eps
    bad = []
    for eps, g in df.groupby("eps"):
        one = g[g["kind"] == "fgsm"]
        many = g[g["kind"] == "pgd"]
        if len(one) and len(many) and eps > 0:
            a1, an = one["robust_acc"].min(), many["robust_acc"].min()
            if a1 < an - _tol(an, int(g["n"].iloc[0])):
                bad.append(f"eps {eps:g}: FGSM {100 * a1:.1f}% < PGD {100 * an:.1f}%")
    add("single-step stronger than iterative", bad, "; ".join(bad) or "iterative attacks are at least as strong",
        "PGD includes FGSM as its first step; if it does worse, its later steps are misled by a locally "
        "uninformative gradient (gradient masking)")

    # 4. more steps or restarts help a lot
    bad = []
    pgd = df[df["kind"] == "pgd"]
    for (norm, loss, eps), g in pgd.groupby(["norm", "loss", "eps"]):
        if len(g) > 1 and eps > 0:
            budget = g["steps"] * g["restarts"]
            weak, strong = g.loc[budget.idxmin()], g.loc[budget.idxmax()]
            if weak["robust_acc"] - strong["robust_acc"] > max(0.05, _tol(weak["robust_acc"], int(weak["n"]))):
                bad.append(f"eps {eps:g}: {weak.attack} {100 * weak.robust_acc:.1f}% -> "
                           f"{strong.attack} {100 * strong.robust_acc:.1f}%")
    add("more steps or restarts help a lot", bad, "; ".join(bad) or "the attack has converged",
        "the weaker attack had not converged; the strongest one may not have either: raise steps and restarts "
        "until accuracy stops falling")

    # 5. an attack that ignores the model's gradient (or replaces it) beats those that follow it
    bad = []
    for eps, g in df.groupby("eps"):
        wb, bb = g[g["kind"].isin(WHITE_BOX)], g[g["kind"].isin(ADAPTIVE)]
        if len(wb) and len(bb) and eps > 0:
            aw, ab = wb["robust_acc"].min(), bb["robust_acc"].min()
            if ab < aw - _tol(aw, int(g["n"].iloc[0])):
                who = bb.loc[bb["robust_acc"].idxmin(), "attack"]
                bad.append(f"eps {eps:g}: {who} {100 * ab:.1f}% < best white-box {100 * aw:.1f}%")
    add("transfer, gradient-free or BPDA beats white-box", bad,
        "; ".join(bad) or "white-box attacks are the strongest",
        "the model's own gradients point the wrong way (gradient masking); its robustness under white-box "
        "attacks is not real")
    return pd.DataFrame(out)
