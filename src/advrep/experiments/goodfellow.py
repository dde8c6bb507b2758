"""Goodfellow, Shlens & Szegedy 2015, "Explaining and Harnessing Adversarial Examples": the paper's MNIST and CIFAR-10
experiments. Schema, computation, run and report section.

- FGSM, x + eps sign(grad_x J), at eps 0.25 against a shallow softmax classifier, a maxout net and a shallow RBF
  network (Sections 4 and 7): error, mean confidence, confidence on the mistakes; PGD-40 at the same eps tells
  resistance to FGSM from robustness.
- FGSM adversarial training, J~ = alpha J(x) + (1 - alpha) J(x_adv) (Section 6), of the softmax and maxout nets, and
  of a maxout net with dropout stopped early on adversarial validation error (closer to the paper's recipe).
- Logistic regression on 3s against 7s (Section 5, Figure 2): FGSM error, the weights and the perturbation as
  images, adversarial training against L1 weight decay; and the paper's finding that L1 on a maxout net's first
  layer is too strong already at 0.0025 (training error above 5%).
- The linear view (Figure 4): a net's logits along the FGSM direction as eps sweeps a wide range.
- Transfer between models (Sections 8, 9): the adversarially trained maxout on the original's examples and back,
  what softmax and RBF predict on the maxout's examples, an ensemble attacked as a whole and through one member.
- Rubbish examples (Appendix A): Gaussian-noise inputs and how confidently each model assigns them a class.
- CIFAR-10 (Section 4): FGSM at eps 0.1 on the CIFAR-10 source model.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from .. import attacks, data, models, robust, stats, store, train
from ..config import NetsExperiment, OptimConfig, Strict, TrainConfig

if TYPE_CHECKING:  # the report's plumbing is imported where a section runs, not by the stage
    from ..render import Context

log = store.logger("goodfellow")
OUT = Path("data/goodfellow")


class Logistic(Strict):
    """Section 5: logistic regression on two MNIST digits."""

    digits: list[int] = [3, 7]  # the negative and the positive class
    optim: OptimConfig
    train: TrainConfig
    l1: list[float] = [0.0025, 0.01]  # L1 weight decay coefficients compared with adversarial training


class LinearView(Strict):
    net: str = "maxout"  # the (standard) net whose logits are followed
    eps: float = Field(10.0, gt=0)  # the sweep spans [-eps, eps] along sign(grad), unclipped as in Figure 4
    points: int = Field(81, gt=2)
    label: int = Field(4, ge=0, le=9)  # the first test image of this class (the paper's figure shows a 4)


class Ensemble(Strict):
    net: str = "maxout"  # members: this net with other seeds
    members: int = Field(4, gt=1)
    epochs: int = Field(3, gt=0)


class Cifar(Strict):
    source: str = "data/models/train_cifar"  # the CIFAR-10 source model (the paper: a convolutional maxout net)
    eps: float = Field(0.1, gt=0)  # L-inf, pixels in [0, 1]
    n: Optional[int] = Field(None, gt=0)  # test images (null: all)
    rubbish_n: int = Field(1000, gt=0)  # Gaussian-noise inputs


class Params(NetsExperiment):
    """Goodfellow et al. 2015 on MNIST and CIFAR-10."""

    eps: float = Field(0.25, gt=0)  # L-inf, pixels in [0, 1] (the paper's MNIST eps)
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the clean loss in the adversarial objective
    eps_curve: list[float]  # error-against-eps curves
    n_eval: Optional[int] = Field(None, gt=0)  # test images of the FGSM numbers; null = all 10,000
    pgd_n: int = Field(2000, gt=0)  # test images of the PGD-40 check (the first N)
    adversarial: list[str] = ["softmax", "maxout"]  # nets also trained with the FGSM objective
    early_stopped: Optional[str] = None  # a net FGSM-trained with early stopping on adversarial validation error
    validation: int = Field(10000, gt=0)  # training images held out for that early stopping
    l1_first_layer: float = Field(0.0025, ge=0)  # L1 on the maxout net's first layer (0: skip)
    logistic: Logistic
    linear_view: LinearView = LinearView()
    ensemble: Optional[Ensemble] = Ensemble()
    rubbish_n: int = Field(10000, gt=0)  # Gaussian-noise inputs N(0, I), unclipped as in the paper
    rubbish_threshold: float = Field(0.5, gt=0, lt=1)  # a noise input "fools" a model above this confidence
    cifar: Optional[Cifar] = Cifar()

    @model_validator(mode="after")
    def _refs(self):
        names = {n.name for n in self.nets}
        wanted = [*self.adversarial, self.linear_view.net, *([self.early_stopped] if self.early_stopped else []),
                  *([self.ensemble.net] if self.ensemble else [])]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ValueError(f"{missing} not among the nets {sorted(names)}")
        if "maxout" not in names and self.l1_first_layer:
            raise ValueError("l1_first_layer needs a net named 'maxout'")
        return self


SECTIONS = {"goodfellow": Params}


# ---------------------------------------------------------------------------------------------------------------
# Computation


def scores(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """What a model's confidence is: softmax probabilities, except for the RBF network, whose units are read
    directly (exp(-distance), as in the paper's p(y=1|x) = exp((x - mu)^T beta (x - mu))), so it can be unsure of
    every class at once."""
    if any(isinstance(m, models.RBF) for m in model.modules()):
        return logits.exp().clamp(max=1.0)
    return F.softmax(logits, 1)


@torch.no_grad()
def fgsm_stats(model, x, y, eps, batch=2000):
    """Error rate and mean confidence (max softmax probability) on FGSM examples at eps (eps 0: clean)."""
    wrong, conf, conf_wrong = 0, 0.0, 0.0
    with attacks.eval_mode(model):
        for i in range(0, len(x), batch):
            xb, yb = x[i:i + batch], y[i:i + batch]
            with torch.enable_grad():
                xa = attacks.fgsm(model, xb, yb, eps).x if eps > 0 else xb
            p = scores(model, model(xa))
            c, pred = p.max(1)
            w = pred != yb
            wrong += w.sum().item()
            conf, conf_wrong = conf + c.sum().item(), conf_wrong + c[w].sum().item()
    return {"error": wrong / len(x), "confidence": conf / len(x), "confidence_when_wrong": conf_wrong / max(wrong, 1)}


def l1_objective(coef: float, base=None):
    """The training loss plus coef * |W| of the first weight layer (Goodfellow et al.'s L1 weight decay)."""
    def objective(model, x, y):
        first = next(m for m in model.modules() if isinstance(m, nn.Linear))
        loss = base(model, x, y) if base is not None else F.cross_entropy(model(x), y)
        return loss + coef * first.weight.abs().sum()
    return robust.describe(objective, kind="l1_first_layer", coef=coef,
                           base=None if base is None else base.spec)


def early_stopping(x_val: torch.Tensor, y_val: torch.Tensor, eps: float, best: dict):
    """An on_epoch hook: FGSM error on held-out training images after every epoch; the weights of the epoch with
    the lowest one are kept in `best` (the paper's early stopping on adversarial validation error)."""
    def on_epoch(epoch: int, model: nn.Module) -> dict:
        err = fgsm_stats(model, x_val.to(next(model.parameters()).device), y_val.to(next(model.parameters()).device),
                         eps)["error"]
        if err < best.get("error", 2.0):
            best.update(error=err, epoch=epoch + 1, state=copy.deepcopy(model.state_dict()))
        return {"val_fgsm_error": err}
    return robust.describe(on_epoch, kind="early_stopping", eps=eps, data=store.tensor_hash(x_val, y_val))


class Mean(nn.Module):
    """An ensemble: the mean of its members' softmax probabilities, as log-probabilities (so cross-entropy and
    FGSM apply to the ensemble as one model)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        return torch.stack([F.softmax(m(x), 1) for m in self.members]).mean(0).clamp_min(1e-12).log()


@torch.no_grad()
def rubbish(model: nn.Module, shape: tuple, n: int, threshold: float, seed: int) -> dict:
    """Gaussian noise N(0, I) fed as images (unclipped, as in the paper's Appendix A): the share a model assigns to
    a class with confidence above `threshold`, and its mean confidence on those."""
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))
    dev = next(model.parameters()).device
    with attacks.eval_mode(model):
        p = torch.cat([scores(model, model(x[i:i + 1000].to(dev))) for i in range(0, n, 1000)])
    c, pred = p.max(1)
    fooled = c > threshold
    return {"fooled": fooled.float().mean().item(), "confidence_fooled": c[fooled].mean().item() if fooled.any()
            else float("nan"), "n": n, "classes": torch.bincount(pred[fooled].cpu(), minlength=10).tolist()}


def binary(split: data.Split, digits: list[int]) -> data.Split:
    keep = (split.y == digits[0]) | (split.y == digits[1])
    return data.Split(split.x[keep], (split.y[keep] == digits[1]).long(), split.index[keep])


# ---------------------------------------------------------------------------------------------------------------
# Run


def run(section: str, cfg: Params) -> None:
    from ..figures import example_grid

    t0 = time.time()
    device = train.pick_device(cfg.device)
    raw = Path("data/raw/mnist.npz")
    trainset = data.subset(data.load(raw, "train"), cfg.train_limit, cfg.seed)
    test = data.load(raw, "test", limit=cfg.n_eval)
    x, y = test.x.to(device), test.y.to(device)
    xp, yp = x[:cfg.pgd_n], y[:cfg.pgd_n]
    rows, curves, trained = [], [], {}
    by_name = {n.name: n for n in cfg.nets}

    def evaluate(name: str, variant: str, model: nn.Module, seconds: float, extra: dict | None = None) -> None:
        st = {e: fgsm_stats(model, x, y, e) for e in sorted({0.0, cfg.eps, *cfg.eps_curve})}
        pgd = attacks.batched(attacks.pgd, model, xp, yp, 2000, threat=attacks.Linf(cfg.eps), steps=40,
                              step_size=2.5 * cfg.eps / 40)
        rows.append({"net": name, "variant": variant, "clean_error": st[0.0]["error"],
                     "fgsm_error": st[cfg.eps]["error"], "fgsm_confidence": st[cfg.eps]["confidence"],
                     "fgsm_confidence_when_wrong": st[cfg.eps]["confidence_when_wrong"],
                     "clean_confidence": st[0.0]["confidence"],
                     "pgd40_error": 1 - (pgd.logits.argmax(1) == yp).float().mean().item(), "pgd_n": len(xp),
                     "n": len(x), "seconds": seconds, **(extra or {})})
        curves.extend({"net": name, "variant": variant, "eps": e, **st[e]} for e in cfg.eps_curve)
        trained[(name, variant)] = model
        models.save(model, OUT / "nets" / f"{name}-{variant}")
        r = rows[-1]
        log.info(f"{name} ({variant}): clean error {r['clean_error']:.4f}, FGSM eps {cfg.eps:g} error "
                 f"{r['fgsm_error']:.4f} at confidence {r['fgsm_confidence']:.3f}, PGD-40 error {r['pgd40_error']:.4f}"
                 f" ({seconds:.0f}s)")

    def fit(net, variant, objective=None, seed=cfg.seed, data_=trainset, on_epoch=None, epochs=None):
        tcfg = cfg.train if epochs is None else cfg.train.model_copy(update={"epochs": epochs})
        return train.train_model(net.spec(), data_, test, tcfg, net.optim(cfg.optim), seed, device,
                                 Path("data/checkpoints") / f"goodfellow_{net.name}_{variant}_{seed}.pt", objective,
                                 desc=f"{net.name} ({variant})", on_epoch=on_epoch)

    for net in cfg.nets:
        if net.name == cfg.early_stopped:
            continue
        t = time.time()
        model, _ = fit(net, "standard")
        evaluate(net.name, "standard", model, time.time() - t)
        if net.name in cfg.adversarial:
            t = time.time()
            model, _ = fit(net, "FGSM-trained", robust.fgsm_objective(cfg.eps, cfg.alpha))
            evaluate(net.name, "FGSM-trained", model, time.time() - t)
    if cfg.early_stopped:  # dropout, FGSM objective, early stopping on adversarial validation error
        net, t = by_name[cfg.early_stopped], time.time()
        n_fit = len(trainset) - cfg.validation
        fit_set = data.Split(trainset.x[:n_fit], trainset.y[:n_fit], trainset.index[:n_fit])
        best: dict = {}
        model, hist = fit(net, "FGSM-trained, early-stopped", robust.fgsm_objective(cfg.eps, cfg.alpha),
                          data_=fit_set, on_epoch=early_stopping(trainset.x[n_fit:], trainset.y[n_fit:], cfg.eps, best))
        model.load_state_dict(best["state"])
        evaluate(net.name, "FGSM-trained, early-stopped", model, time.time() - t,
                 {"best_epoch": best["epoch"], "val_fgsm_error": best["error"]})
    l1 = None
    if cfg.l1_first_layer:  # the paper's finding: L1 on the first layer of a maxout net, 0.0025 is already too strong
        net, t = by_name["maxout"], time.time()
        model, hist = fit(net, f"L1 {cfg.l1_first_layer:g}", l1_objective(cfg.l1_first_layer))
        l1 = {"coef": cfg.l1_first_layer, "train_error": 1 - train.evaluate(model, trainset, 2000, device)["acc"],
              "test_error": 1 - train.evaluate(model, test, 2000, device)["acc"], "seconds": time.time() - t}
        log.info(f"maxout with L1 {cfg.l1_first_layer:g} on its first layer: training error {l1['train_error']:.4f}")

    logistic = logistic_study(cfg, trainset, test, device)
    view = linear_view(cfg, trained[(cfg.linear_view.net, "standard")], test)
    transfer = transfer_study(cfg, trained, x, y)
    ens = ensemble_study(cfg, by_name, fit, x, y) if cfg.ensemble else None
    rub = {f"{n} ({v})": rubbish(m, (1, 28, 28), cfg.rubbish_n, cfg.rubbish_threshold, cfg.seed)
           for (n, v), m in trained.items() if v == "standard"}
    cifar = cifar_study(cfg, device) if cfg.cifar else None

    last = cfg.linear_view.net
    m = trained[(last, "standard")]
    example_grid(x[:8], attacks.fgsm(m, x[:8], y[:8], cfg.eps).x, y[:8], None, m,
                 "reports/figures/goodfellow_examples.png", f"FGSM eps {cfg.eps:g} against {last}")
    metrics = {f"{r['net']} ({r['variant']})": {"n": r["n"], **{k: round(r[k], 4) for k in
                                                               ("clean_error", "fgsm_error", "fgsm_confidence")},
                                               "pgd40": {"n": r["pgd_n"], "error": round(r["pgd40_error"], 4)}}
               for r in rows}
    metrics["logistic"] = {k: {"n": v["n_test"], "test_error": v["test_error"], "fgsm_error": v["fgsm_error"],
                               "train_error": v["train_error"]} for k, v in logistic.items()}
    metrics["transfer"] = {"n": len(x), **{k: v for k, v in transfer.items() if isinstance(v, float)}}
    if ens:
        metrics["ensemble"] = {"n": len(x), "whole": ens["whole"], "one_member": ens["one_member"]}
    metrics["rubbish"] = {k: {"n": v["n"], "fooled": v["fooled"]} for k, v in rub.items()}
    if l1:
        metrics["l1_maxout"] = {"n": len(trainset), "train_error": l1["train_error"]}
    if cifar:
        metrics["cifar"] = {"n": cifar["n"], "fgsm_error": cifar["fgsm_error"],
                            "confidence_wrong": cifar["confidence_wrong"]}
    store.publish("goodfellow", cfg, t0, str(device), metrics=metrics, out=OUT,
                  tables={"goodfellow": pd.DataFrame(rows), "goodfellow_linear_view": view},
                  plots={"goodfellow_eps": pd.DataFrame(curves)},
                  logistic=logistic, transfer=transfer, ensemble=ens, rubbish=rub, l1_maxout=l1, cifar=cifar)


def logistic_study(cfg: Params, trainset, test, device) -> dict:
    """Logistic regression on two digits (a 2-logit softmax, equivalent to the logistic loss): plain, FGSM-trained,
    and with L1 weight decay; its weights and the FGSM perturbation as images (Figure 2)."""
    import matplotlib.pyplot as plt

    lg = cfg.logistic
    tr, te = binary(trainset, lg.digits), binary(test, lg.digits)
    spec = {"arch": "mlp", "widths": [], "dataset": "mnist", "classes": 2}
    variants = {"plain": None, "FGSM-trained": robust.fgsm_objective(cfg.eps, cfg.alpha),
                **{f"L1 {c:g}": l1_objective(c) for c in lg.l1}}
    out, weights = {}, {}
    for name, objective in variants.items():
        model, _ = train.train_model(spec, tr, te, lg.train, lg.optim, cfg.seed, device,
                                     Path("data/checkpoints") / f"goodfellow_logistic_{name.replace(' ', '_')}.pt",
                                     objective, desc=f"logistic {lg.digits} {name}")
        xt, yt = te.x.to(device), te.y.to(device)
        out[name] = {"train_error": 1 - train.evaluate(model, tr, 2000, device)["acc"],
                     "test_error": 1 - train.evaluate(model, te, 2000, device)["acc"],
                     "fgsm_error": fgsm_stats(model, xt, yt, cfg.eps)["error"], "n_test": len(te)}
        lin = model.body[-1]
        weights[name] = (lin.weight[1] - lin.weight[0]).detach().cpu().view(28, 28) / model.norm.std.item()
        log.info(f"logistic {name}: test error {out[name]['test_error']:.4f}, FGSM eps {cfg.eps:g} error "
                 f"{out[name]['fgsm_error']:.4f}, train error {out[name]['train_error']:.4f}")
    # Figure 2: the plain model's weights, their signs, and the perturbation on one example; the same weights
    # after adversarial training
    w, wa = weights["plain"], weights["FGSM-trained"]
    fig, axes = plt.subplots(1, 5, figsize=(11, 2.6))
    x0 = te.x[0, 0]
    pert = (x0 + cfg.eps * torch.sign(-w if te.y[0] == 1 else w)).clamp(0, 1)
    for ax, img, t, cm in ((axes[0], w, "weights w (plain)", "RdBu"), (axes[1], torch.sign(w), "sign(w)", "RdBu"),
                           (axes[2], x0, f"a test {lg.digits[int(te.y[0])]}", "gray"),
                           (axes[3], pert, f"+ FGSM eps {cfg.eps:g}", "gray"),
                           (axes[4], wa, "weights (FGSM-trained)", "RdBu")):
        lim = float(img.abs().max()) if cm == "RdBu" else 1.0
        ax.imshow(img, cmap=cm, vmin=-lim if cm == "RdBu" else 0, vmax=lim)
        ax.set_title(t, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Logistic regression, {lg.digits[1]}s against {lg.digits[0]}s (Figure 2 of the paper)",
                 fontsize=10)
    from ..store import atomic
    with atomic("reports/figures/goodfellow_logistic.png", "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def linear_view(cfg: Params, model: nn.Module, test: data.Split) -> pd.DataFrame:
    """Figure 4: the logits of one example along sign(grad) for eps in [-E, E], unclipped (as in the paper)."""
    lv = cfg.linear_view
    i = int((test.y == lv.label).nonzero()[0])
    dev = next(model.parameters()).device
    x, y = test.x[i:i + 1].to(dev), test.y[i:i + 1].to(dev)
    with attacks.eval_mode(model):
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            g, = torch.autograd.grad(F.cross_entropy(model(xg), y), xg)
        eps = torch.linspace(-lv.eps, lv.eps, lv.points)
        with torch.no_grad():
            z = model(x + eps.to(dev).view(-1, 1, 1, 1) * g.sign()).cpu()
    return pd.DataFrame([{"eps": float(e), **{f"logit {c}": float(z[k, c]) for c in range(10)}}
                         for k, e in enumerate(eps)]).assign(label=lv.label, net=lv.net)


@torch.no_grad()
def _pred(model, x, batch=2000):
    with attacks.eval_mode(model):
        return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def transfer_study(cfg: Params, trained: dict, x, y) -> dict:
    """Sections 8 and 9: how examples made for one model fare on others."""
    def adv(model):
        return attacks.batched(attacks.fgsm, model, x, y, 2000, eps=cfg.eps).x
    out: dict = {}
    base = trained.get(("maxout", "standard"))
    robust_name = next((k for k in (("maxout", "FGSM-trained, early-stopped"), ("maxout_dropout",
                                                                               "FGSM-trained, early-stopped"),
                                    ("maxout", "FGSM-trained")) if k in trained), None)
    if base is not None and robust_name is not None:
        at = trained[robust_name]
        out["adversarial_net"] = f"{robust_name[0]} ({robust_name[1]})"
        out["at_on_original"] = (_pred(at, adv(base)) != y).float().mean().item()
        out["original_on_at"] = (_pred(base, adv(at)) != y).float().mean().item()
    if base is not None:
        xa = adv(base)
        pm = _pred(base, xa)
        wrong = pm != y
        for other in ("softmax", "rbf"):
            if (other, "standard") in trained:
                po = _pred(trained[(other, "standard")], xa)
                out[f"{other}_error"] = (po != y).float().mean().item()
                # over the maxout's mistakes, how often the other model predicts the maxout's class
                out[f"{other}_agrees_on_maxout_mistakes"] = (po[wrong] == pm[wrong]).float().mean().item()
                both = wrong & (po != y)
                out[f"{other}_agrees_when_both_wrong"] = (po[both] == pm[both]).float().mean().item()
    return out


def ensemble_study(cfg: Params, by_name: dict, fit, x, y) -> dict:
    """An ensemble of `members` nets (other seeds), attacked by FGSM as a whole and through one member."""
    e = cfg.ensemble
    net = by_name[e.net]
    members = [fit(net, "ensemble member", seed=cfg.seed + 100 + k, epochs=e.epochs)[0] for k in range(e.members)]
    ens = Mean(members)
    whole = attacks.batched(attacks.fgsm, ens, x, y, 2000, eps=cfg.eps).x
    one = attacks.batched(attacks.fgsm, members[0], x, y, 2000, eps=cfg.eps).x
    return {"members": e.members, "clean": (_pred(ens, x) != y).float().mean().item(),
            "whole": (_pred(ens, whole) != y).float().mean().item(),
            "one_member": (_pred(ens, one) != y).float().mean().item()}


def cifar_study(cfg: Params, device) -> dict:
    c = cfg.cifar
    model = models.load(c.source, device)
    test = data.load(Path("data/raw/cifar10.npz"), "test", limit=c.n)
    x, y = test.x.to(device), test.y.to(device)
    wrong, conf_wrong = 0, 0.0
    with attacks.eval_mode(model):
        for i in range(0, len(x), 500):
            xa = attacks.fgsm(model, x[i:i + 500], y[i:i + 500], c.eps).x
            with torch.no_grad():
                p = F.softmax(model(xa), 1)
            cc, pred = p.max(1)
            w = pred != y[i:i + 500]
            wrong += w.sum().item()
            conf_wrong += cc[w].sum().item()
    rub = rubbish(model, (3, 32, 32), c.rubbish_n, cfg.rubbish_threshold, cfg.seed)
    return {"n": len(x), "fgsm_error": wrong / len(x), "confidence_wrong": conf_wrong / max(wrong, 1),
            "rubbish": rub, "source": c.source}


# ---------------------------------------------------------------------------------------------------------------
# Report


def section(ctx: Context) -> str:
    import matplotlib.pyplot as plt

    from ..render import pct, table
    title = f"## {TITLE}\n\n"
    tab, curves, m = ctx.table("goodfellow"), ctx.plot("goodfellow_eps"), ctx.metrics("goodfellow")
    view, run_ = ctx.table("goodfellow_linear_view"), ctx.runs().get("goodfellow")
    if tab is None or curves is None or m is None or run_ is None:
        return title + "Not run yet.\n"
    a = ctx.anchors["goodfellow"]
    p = run_["params"]
    eps = p["eps"]
    rows = []
    for r in tab.itertuples():
        ref = a["fgsm"].get(f"{r.net} ({r.variant})", {})
        lo, hi = stats.binomial_ci(round(r.fgsm_error * r.n), int(r.n))
        rows.append({"net": r.net, "training": r.variant,
                     "clean error (ours / paper)": f"{pct(r.clean_error, 2)} / {pct(ref.get('clean_error'), 2)}",
                     f"FGSM eps {eps:g} error (ours, 95% CI / paper)":
                         f"{pct(r.fgsm_error)} ({100 * lo:.1f}-{100 * hi:.1f}) / {pct(ref.get('fgsm_error'))}",
                     "mean confidence (ours / paper)": f"{pct(r.fgsm_confidence)} / {pct(ref.get('fgsm_confidence'))}",
                     "confidence when wrong (ours / paper)":
                         f"{pct(r.fgsm_confidence_when_wrong)} / {pct(ref.get('confidence_when_wrong'))}",
                     f"PGD-40 error (n={int(r.pgd_n)})": pct(r.pgd40_error), "n": int(r.n)})
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for (net, variant), g in curves.groupby(["net", "variant"], sort=False):
        ax.plot(g["eps"], 100 * g["error"], marker="o", ms=3, ls="-" if variant == "standard" else "--",
                label=f"{net}, {variant}")
    ax.axvline(eps, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="FGSM eps (L-inf, pixels in [0, 1])", ylabel="test error (%)", ylim=(-3, 103),
           title="Error against eps (white-box FGSM on each model)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    img = ctx.figure(fig, "goodfellow_eps")
    parts = [title, f"FGSM, x + eps * sign(grad), on the MNIST test set (n={int(tab['n'].iloc[0]):,}), each model "
             "attacked white-box (an FGSM-trained model by FGSM on itself); confidence is the mean max softmax "
             f"probability on the adversarial examples. Adversarial training: J~ = {p['alpha']} J(x) + "
             f"{1 - p['alpha']:g} J(x_adv). Cells read ours / paper.\n\n{table(rows)}\n\n![FGSM error]({img})\n\n"
             f"{reading(tab, eps, curves)}\n"]
    run_extra = run_
    lg = run_extra.get("logistic")
    if lg:
        ref = a["logistic"]
        lrows = [{"logistic regression": k, "train error": pct(v["train_error"], 2),
                  "test error": pct(v["test_error"], 2), f"FGSM eps {eps:g} error": pct(v["fgsm_error"]),
                  "n (test)": v["n_test"]} for k, v in lg.items()]
        d = p["logistic"]["digits"]
        parts.append(f"**Logistic regression, {d[1]}s against {d[0]}s (Section 5, Figure 2).** The paper: "
                     f"{pct(ref['clean_error'], 1)} clean error, {pct(ref['fgsm_error'])} at eps {eps:g}; FGSM is "
                     f"exact for this model.\n\n{table(lrows)}\n\n![logistic](figures/goodfellow_logistic.png)\n")
    l1 = run_extra.get("l1_maxout")
    if l1:
        too_strong = l1["train_error"] > a["l1_maxout"]["train_error_above"]
        parts.append(f"**L1 weight decay on the maxout net's first layer** at {l1['coef']:g}: training error "
                     f"{pct(l1['train_error'], 2)} (the paper: above {pct(a['l1_maxout']['train_error_above'], 0)}, "
                     f"\"too large\"): {'reproduces' if too_strong else 'does not reproduce'}. (The paper reports "
                     "this for maxout networks; its logistic-regression section compares adversarial training "
                     "with L1 in its equations only.)\n")
    if view is not None:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for c in range(10):
            ax.plot(view["eps"], view[f"logit {c}"], lw=1.8 if c == int(view["label"].iloc[0]) else 1,
                    label=f"class {c}")
        ax.axvline(0, color="k", lw=0.6)
        ax.set(xlabel="eps along sign(grad) (unclipped)", ylabel="logit",
               title=f"Logits of one test {int(view['label'].iloc[0])} along the FGSM direction "
                     f"({view['net'].iloc[0]})")
        ax.legend(fontsize=6, ncol=5, loc="lower center", bbox_to_anchor=(0.5, -0.45))
        ax.grid(alpha=0.3)
        img = ctx.figure(fig, "goodfellow_linear_view")
        slope = np.diff(view[[f"logit {c}" for c in range(10)]].values, axis=0)
        changes = int((np.abs(np.diff(slope, axis=0)) > 1e-3 * np.abs(slope).max()).any(axis=1).sum())
        parts.append(f"**The linear view (Figure 4).** Along the FGSM direction the logits are piecewise linear: "
                     f"their slope changes at {changes} of the {len(view) - 2} interior points of the sweep "
                     f"(eps in [{view['eps'].min():g}, {view['eps'].max():g}]).\n\n![linear view]({img})\n")
    tr = run_extra.get("transfer") or {}
    if tr:
        ref = a["transfer"]
        trow = []
        if "at_on_original" in tr:
            trow += [{"examples made for": "maxout (standard)", "fed to": tr["adversarial_net"],
                      "error (ours)": pct(tr["at_on_original"]), "paper": pct(ref["at_on_original"])},
                     {"examples made for": tr["adversarial_net"], "fed to": "maxout (standard)",
                      "error (ours)": pct(tr["original_on_at"]), "paper": pct(ref["original_on_at"])}]
        for other in ("softmax", "rbf"):
            if f"{other}_error" in tr:
                trow.append({"examples made for": "maxout (standard)", "fed to": f"{other} (standard)",
                             "error (ours)": pct(tr[f"{other}_error"]), "paper": "–"})
                trow.append({"examples made for": "maxout's mistakes", "fed to": f"{other}: predicts maxout's class",
                             "error (ours)": pct(tr[f"{other}_agrees_on_maxout_mistakes"]),
                             "paper": pct(ref.get(f"{other}_agrees_on_maxout_mistakes"))})
                trow.append({"examples made for": "both wrong", "fed to": f"{other}: agrees with maxout",
                             "error (ours)": pct(tr[f"{other}_agrees_when_both_wrong"]),
                             "paper": pct(ref.get(f"{other}_agrees_when_both_wrong"))})
        ens = run_extra.get("ensemble")
        if ens:
            trow += [{"examples made for": f"the ensemble of {ens['members']} maxout nets", "fed to": "the ensemble",
                      "error (ours)": pct(ens["whole"]), "paper": pct(ref["ensemble_whole"])},
                     {"examples made for": "one member", "fed to": "the ensemble", "error (ours)":
                      pct(ens["one_member"]), "paper": pct(ref["ensemble_one_member"])}]
        parts.append(f"**Transfer between models and ensembles (Sections 8, 9)**, FGSM at eps {eps:g}:\n\n"
                     f"{table(trow)}\n")
    rub = run_extra.get("rubbish")
    if rub:
        ref = a["rubbish"]
        rrow = [{"model": k, "assigns a class with confidence > "
                 f"{p['rubbish_threshold']:g}": pct(v["fooled"]), "mean confidence then": pct(v["confidence_fooled"]),
                 "paper": f"{pct(ref[k.split(' ')[0]]['fooled'])} at {pct(ref[k.split(' ')[0]]['confidence'])}"
                 if k.split(" ")[0] in ref else "–", "n": v["n"]} for k, v in rub.items()]
        c = run_extra.get("cifar")
        if c:
            rrow.append({"model": f"CIFAR-10 `{c['source']}`", f"assigns a class with confidence > "
                         f"{p['rubbish_threshold']:g}": pct(c["rubbish"]["fooled"]),
                         "mean confidence then": pct(c["rubbish"]["confidence_fooled"]),
                         "paper": f"{pct(ref['cifar']['fooled'])} at {pct(ref['cifar']['confidence'])} (conv maxout)",
                         "n": c["rubbish"]["n"]})
        parts.append(f"**Rubbish examples (Appendix A)**: inputs drawn from N(0, I), unclipped:\n\n{table(rrow)}\n")
    c = run_extra.get("cifar")
    if c:
        ref = a["cifar"]
        lo, hi = stats.binomial_ci(round(c["fgsm_error"] * c["n"]), c["n"])
        parts.append(f"**CIFAR-10 (Section 4).** FGSM at eps {p['cifar']['eps']:g} on `{c['source']}` (n={c['n']:,}): "
                     f"{pct(c['fgsm_error'])} error (95% CI {100 * lo:.1f}-{100 * hi:.1f}) at "
                     f"{pct(c['confidence_wrong'])} mean confidence on the wrong labels; the paper's convolutional "
                     f"maxout net: {pct(ref['fgsm_error'], 2)} at {pct(ref['confidence'])}.\n")
    parts.append("![FGSM examples](figures/goodfellow_examples.png)\n")
    return "\n".join(parts)


def reading(tab: pd.DataFrame, eps: float, curves: pd.DataFrame) -> str:
    """What the FGSM table says, computed from it, and the settings that differ from the paper."""
    from ..render import pct
    lines = ["**Reading the table.**"]
    at = tab[tab["variant"] != "standard"]
    for r in at.itertuples():
        if r.pgd40_error - r.fgsm_error > 0.2:
            lines.append(
                f"The {r.variant} {r.net} resists FGSM ({pct(r.fgsm_error)} error) but not PGD-40 at the same eps "
                f"({pct(r.pgd40_error)} error): much of its resistance to FGSM is a masked gradient sign, the known "
                "failure of single-step adversarial training (Tramer et al. 2018), not robustness.")
        c = curves[(curves["net"] == r.net) & (curves["variant"] == r.variant)].sort_values("eps")
        peak = c.loc[c["error"].idxmax()]
        if peak["eps"] < eps and peak["error"] - r.fgsm_error > 0.1:
            lines.append(
                f"Its FGSM error is not monotone in eps: {pct(peak['error'])} at eps {peak['eps']:g}, down to "
                f"{pct(r.fgsm_error)} at the training eps {eps:g}. A net that were robust at {eps:g} would be at "
                "least as robust at a smaller eps; this one learned to defeat the one step it was trained on.")
    lines.append(
        "Settings that differ from the paper: the nets are trained for a few epochs with Adam; the maxout layers "
        "have 240 units (the paper's adversarially trained net: 1,600 units, dropout, early stopping on adversarial "
        "validation error, then retraining on all 60,000 images); our early-stopped net uses dropout and early "
        "stopping but keeps 240 units and is not retrained on the validation images; pixels are in [0, 1] with the "
        "normalisation inside the model.")
    return " ".join(lines)


TITLE = "Goodfellow et al. 2015: explaining and harnessing adversarial examples"


def claims(ctx: Context) -> list:
    from ..render import Claim, wilson
    m, run_ = ctx.metrics("goodfellow"), ctx.runs().get("goodfellow")
    paper, sec = "Goodfellow et al. 2015", "## " + TITLE
    if m is None or run_ is None:
        return [Claim(paper, "FGSM fools a maxout net at eps 0.25", 0.894, None, section=sec)]
    a, p = ctx.anchors["goodfellow"], run_["params"]
    eps, out = p["eps"], []
    for key, what in (("softmax (standard)", "FGSM error of a softmax classifier"),
                      ("maxout (standard)", "FGSM error of a maxout net"), ("rbf (standard)", "FGSM error of an RBF net")):
        if key in m:
            v, n = m[key]["fgsm_error"], m[key]["n"]
            lo, hi = wilson(v, n)
            out.append(Claim(paper, f"{what}, eps {eps:g}", a["fgsm"][key]["fgsm_error"], v, lo, hi, f"n={n:,}",
                             m[key]["clean_error"], sec))
    at = next((k for k in ("maxout_dropout (FGSM-trained, early-stopped)", "maxout (FGSM-trained)") if k in m), None)
    if at and "maxout (standard)" in m:
        v, n = m[at]["fgsm_error"], m[at]["n"]
        lo, hi = wilson(v, n)
        out.append(Claim(paper, f"FGSM training lowers the maxout's FGSM error ({at})", a["fgsm"][at]["fgsm_error"],
                         v, lo, hi, f"n={n:,}", m["maxout (standard)"]["fgsm_error"], sec))
    lg = m.get("logistic", {}).get("plain")
    if lg:
        lo, hi = wilson(lg["fgsm_error"], lg["n"])
        out.append(Claim(paper, "FGSM error of logistic regression, 3s vs 7s", a["logistic"]["fgsm_error"],
                         lg["fgsm_error"], lo, hi, f"n={lg['n']:,}", lg["test_error"], sec))
    l1 = m.get("l1_maxout")
    if l1:
        lo, hi = wilson(l1["train_error"], l1["n"])
        out.append(Claim(paper, f"L1 {a['l1_maxout']['coef']:g} on the maxout's first layer: training error above",
                         a["l1_maxout"]["train_error_above"], l1["train_error"], lo, hi, f"n={l1['n']:,}",
                         section=sec, bound="above"))
    ens = m.get("ensemble")
    if ens:
        lo, hi = wilson(ens["whole"], ens["n"])
        out.append(Claim(paper, "an ensemble attacked as a whole", a["transfer"]["ensemble_whole"], ens["whole"], lo,
                         hi, f"n={ens['n']:,}", None, sec))
    rub = m.get("rubbish", {}).get("maxout (standard)")
    if rub:
        lo, hi = wilson(rub["fooled"], rub["n"])
        out.append(Claim(paper, "Gaussian noise classified with confidence > 0.5 by the maxout net",
                         a["rubbish"]["maxout"]["fooled"], rub["fooled"], lo, hi, f"n={rub['n']:,}", 0.0, sec))
    c = m.get("cifar")
    if c:
        lo, hi = wilson(c["fgsm_error"], c["n"])
        out.append(Claim(paper, f"FGSM error on CIFAR-10, eps {p['cifar']['eps']:g}", a["cifar"]["fgsm_error"],
                         c["fgsm_error"], lo, hi, f"n={c['n']:,}", None, sec))
    return out
