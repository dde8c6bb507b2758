"""Evaluation: robust accuracy over a list of eps per attack, as a tidy table, with Carlini et al.'s sanity flags.

`evaluate` is what every stage calls: it runs a list of `AttackSpec`s over their eps on the same images and returns
the table and its sanity flags. `robustness` runs each spec at each eps and returns one row per (attack, eps), with
the distortion the attack actually used. `sanity_flags` reads that table and raises the warning signs listed in Carlini et al. 2019,
"On Evaluating Adversarial Robustness" (section 5 and appendix), each with what it suggests. AutoAttack, the
reference evaluation, comes from the torchattacks package (a port of Croce & Hein's code) behind the same API.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd
import torch
import torch.nn as nn

from . import attacks as A

KINDS = ("fgsm", "pgd", "autoattack", "gradfree", "transfer", "bpda")
WHITE_BOX = ("fgsm", "pgd", "autoattack")  # attacks that follow the model's own gradient
ADAPTIVE = ("transfer", "gradfree", "bpda")  # attacks that do not trust it


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
    samples: int = 100  # gradfree: function evaluations per step and example
    sigma: float = 0.0  # gradfree: sampling scale (0: eps / 4)
    surrogate: Optional[nn.Module] = field(default=None, compare=False, repr=False)  # transfer: attacked model
    via: Optional[nn.Module] = field(default=None, compare=False, repr=False)  # bpda: gradients from this twin
    max_n: Optional[int] = None  # evaluate on the first max_n examples only (slow attacks on a CPU)
    slow: bool = False  # `evaluate` runs it at the short list `slow_eps` only
    eps: Optional[tuple[float, ...]] = None  # its own eps grid, in place of the evaluation's (e.g. FGSM's table)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"attack '{self.name}': unknown kind '{self.kind}', expected one of {KINDS}")
        if self.norm not in A.THREATS:
            raise ValueError(f"attack '{self.name}': unknown norm '{self.norm}', expected one of {sorted(A.THREATS)}")
        if self.kind == "transfer" and self.surrogate is None:
            raise ValueError(f"attack '{self.name}': a transfer attack needs a surrogate model")
        if self.kind == "bpda" and self.via is None:
            raise ValueError(f"attack '{self.name}': a BPDA attack needs the twin with surrogate backward passes "
                             "(attacks.with_bpda)")
        if self.steps < 1 or self.restarts < 1 or self.step_ratio <= 0:
            raise ValueError(f"attack '{self.name}': steps, restarts and step_ratio must be positive")


def run_attack(spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Adversarial examples for `model` under `spec` at `eps` (a batch)."""
    threat = A.threat(spec.norm, eps)
    if eps == 0:
        return x.clone()
    if spec.kind == "fgsm":
        if spec.norm != "linf":
            raise ValueError(f"attack '{spec.name}': FGSM is an L-inf attack")
        return A.fgsm(model, x, y, eps, loss=spec.loss).x
    if spec.kind == "autoattack":
        return autoattack(model, x, y, eps, spec.norm)
    step = spec.step_ratio * eps / spec.steps
    kw = dict(restarts=spec.restarts, random_start=spec.random_start, loss=spec.loss)
    if spec.kind in ("pgd", "bpda"):  # early stop: a broken example stays broken, and the rest get the compute
        # (the BPDA twin computes the model's own forward values, so its successes are the model's)
        return A.pgd(spec.via if spec.kind == "bpda" else model, x, y, threat, spec.steps, step, early_stop=True,
                     **kw).x
    if spec.kind == "transfer":
        return A.pgd(spec.surrogate, x, y, threat, spec.steps, step, **kw).x
    oracle = A.GradientFree(model, spec.sigma or eps / 4, spec.samples)  # gradfree
    return A.pgd(model, x, y, threat, spec.steps, step, grad=oracle, **kw).x


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf",
               seed: int = 0) -> torch.Tensor:
    """Standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square) from torchattacks, on the model in eval mode."""
    import torchattacks

    with A.eval_mode(model):
        aa = torchattacks.AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version="standard",
                                     n_classes=10, seed=seed)
        return aa(x, y).detach()


def robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, specs: list[AttackSpec], eps_list: list[float],
               batch_size: int = 500) -> pd.DataFrame:
    """One row per (attack, eps): clean and robust accuracy, success rate and the distortion actually used."""
    return _table(model, x, y, [(s, eps_list) for s in specs], batch_size)


def _table(model: nn.Module, x: torch.Tensor, y: torch.Tensor, plan: list[tuple[AttackSpec, list[float]]],
           batch_size: int) -> pd.DataFrame:
    rows = []
    with A.eval_mode(model), torch.no_grad():  # one clean pass, shared by every attack
        clean_all = torch.cat([model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                               for i in range(0, len(x), batch_size)])
    all_x, all_y = x, y
    for spec, eps_list in plan:
        threat_cls = A.THREATS[spec.norm]
        n = len(all_x) if spec.max_n is None else min(spec.max_n, len(all_x))
        x, y, clean_ok = all_x[:n], all_y[:n], clean_all[:n]
        for eps in eps_list:
            ok, dist = [], []
            for i in range(0, len(x), batch_size):
                xb, yb = x[i:i + batch_size], y[i:i + batch_size]
                xa = run_attack(spec, model, xb, yb, eps)
                with A.eval_mode(model), torch.no_grad():
                    ok.append(model(xa).argmax(1) == yb)
                dist.append(threat_cls(eps).norm(xa - xb))
            ok, dist = torch.cat(ok), torch.cat(dist)
            broken = clean_ok & ~ok
            rows.append({
                "attack": spec.name, "kind": spec.kind, "norm": spec.norm, "eps": eps, "steps": spec.steps,
                "restarts": spec.restarts, "loss": spec.loss, "n": len(x),
                "clean_acc": clean_ok.float().mean().item(), "robust_acc": ok.float().mean().item(),
                "success_rate": (broken.sum() / clean_ok.sum().clamp_min(1)).item(),
                "mean_distortion": dist[broken].mean().item() if broken.any() else 0.0,
                "max_distortion": dist.max().item(),
            })
    return pd.DataFrame(rows)


@dataclass
class Evaluation:
    table: pd.DataFrame  # one row per (attack, eps), see `robustness`
    flags: pd.DataFrame  # Carlini et al.'s sanity flags of that table, see `sanity_flags`


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, specs: list[AttackSpec], eps: list[float], *,
             slow_eps: list[float] = (), large_eps: Optional[float] = None, batch_size: int = 500,
             seed: Optional[int] = None) -> Evaluation:
    """Every attack of `specs`, in order, on the same images: each over `eps` (a spec's own `eps` where it has one;
    slow specs over `slow_eps` only), and the sanity flags of the whole table, with `large_eps` the eps at which
    any working attack reaches ~0%. `seed` seeds torch first, so random starts repeat."""
    if seed is not None:
        torch.manual_seed(seed)
    plan = [(s, list(s.eps) if s.eps is not None else list(slow_eps if s.slow else eps)) for s in specs]
    table = _table(model, x, y, plan, batch_size)
    big = None if large_eps is None else {s.norm: large_eps for s in specs}
    return Evaluation(table, sanity_flags(table, large_eps=big))


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
        for (name, norm), g in df[df["kind"].isin(["pgd", "autoattack", "gradfree"])].groupby(["attack", "norm"]):
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
