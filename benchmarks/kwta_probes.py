"""Probes of attacks stronger than the kwta stage's, on the stage's MNIST cnn nets at the blog's eps (0.15): does
anything close the edge k-WTA keeps over its ReLU twin? Two probes the README reports:

- gauss: PGD-100 through the BPDA surrogate, its gradient averaged over Gaussian input noise (EOT, `--draws` draws
  of sigma = each of `--sigmas` times eps): the gradient of the smoothed function, which Tramer et al.'s sampling
  estimates from values; beside plain BPDA-PGD-100 on the same images.
- anchor (the blog's batch-coupled layer only): each scored batch's first example, whose threshold masks the
  other 31, perturbed within eps by PGD-100 through a threshold made differentiable in that example, to raise the
  other examples' cross-entropy ("ce"), or the sum of its thresholds ("up") or minus it ("down"); the other
  examples stay clean, so the count is how far the anchor alone moves them.

    python benchmarks/kwta_probes.py                 # needs the stage's models: dvc repro kwta
    python benchmarks/kwta_probes.py --probes anchor

Slow: 18 minutes for both probes on a 2-core AMD EPYC without AVX-512; run it on a quiet machine. Writes
reports/benchmarks/kwta_probes.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from advrep import attacks as A
from advrep import data, evaluate, models, store
from advrep.experiments import kwta

EPS = 0.15  # the blog's headline eps, where the stage's edge is largest


class Noisy(nn.Module):
    """`model` on a Gaussian-perturbed input (clipped to [0, 1]) when a gradient is asked for; exact otherwise."""

    def __init__(self, model: nn.Module, sigma: float):
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            x = (x + self.sigma * torch.randn_like(x)).clamp(0, 1)
        return self.model(x)


class SoftAnchor(nn.Module):
    """BatchKWTA's surrogate with its threshold (halfway between example 0's k-th and (k+1)-th largest values)
    differentiable in example 0, so that a gradient reaches the anchor through every other example's mask.
    `sink`, when given, collects each layer's threshold (the 'up' / 'down' objectives)."""

    def __init__(self, gamma: float, temperature: float, sink: list | None = None):
        super().__init__()
        self.kwta, self.temperature, self.sink = models.KWTA(gamma), temperature, sink

    def forward(self, a):
        first = models._rows(a[:1])
        k = self.kwta.k(first.shape[1])
        top = first.topk(k + 1, dim=1).values
        t = (top[:, k - 1] + top[:, k]) / 2
        if self.sink is not None:
            self.sink.append(t.sum())
        scale = (a.detach().flatten(1).std(1) * self.temperature).clamp_min(1e-6).view(-1, *([1] * (a.ndim - 1)))
        return a * torch.sigmoid((a - t.view(*([1] * a.ndim))) / scale)


def gauss(model, x, y, twin_ok, batch, temperature, sigmas, draws, seed) -> list[dict]:
    via = kwta.bpda(model, temperature)  # the stage's BPDA
    specs = [evaluate.AttackSpec(name="BPDA-PGD-100", kind="bpda", steps=100, via=via)]
    specs += [evaluate.AttackSpec(name=f"EOT-Gauss-BPDA-PGD-100 (sigma {s:g} eps, {draws} draws)", kind="bpda",
                                  steps=100, via=A.EOT(Noisy(via, s * EPS), draws)) for s in sigmas]
    res = evaluate.evaluate(model, x, y, specs, [EPS], batch_size=batch, seed=seed, worst_n=len(x), subset_ok=twin_ok)
    return [{"attack": r.attack, "n": int(r.n), "robust_acc": float(r.robust_acc)} for r in res.table.itertuples()]


def anchor(model, x, y, batch, temperature, objective: str, steps: int = 100) -> dict:
    sink = [] if objective != "ce" else None
    soft = A.with_bpda(model, lambda m: isinstance(m, models.KWTA), lambda m: SoftAnchor(m.gamma, temperature, sink))
    clean = broken = total = 0
    with A.eval_mode(model), A.eval_mode(soft):
        for i in range(0, len(x), batch):
            xb, yb = x[i:i + batch], y[i:i + batch]

            def others_correct(first):
                with torch.no_grad():
                    return (model(torch.cat([first, xb[1:]])).argmax(1)[1:] == yb[1:]).sum().item()
            base = best = others_correct(xb[:1])
            delta = torch.empty_like(xb[:1]).uniform_(-EPS, EPS)
            for _ in range(steps):
                delta.requires_grad_(True)
                if sink is not None:
                    sink.clear()
                out = soft(torch.cat([(xb[:1] + delta).clamp(0, 1), xb[1:]]))
                loss = (F.cross_entropy(out[1:], yb[1:], reduction="sum") if objective == "ce" else
                        (1 if objective == "up" else -1) * sum(sink))
                g, = torch.autograd.grad(loss, delta)
                delta = (delta.detach() + EPS / 10 * g.sign()).clamp(-EPS, EPS)
                best = min(best, others_correct((xb[:1] + delta).clamp(0, 1)))
            clean, broken, total = clean + base, broken + best, total + len(xb) - 1
    return {"attack": f"crafted anchor ({objective}), PGD-{steps}", "n": total, "others_clean_correct": clean,
            "others_correct_behind_anchor": broken}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=Path("data/kwta/mnist/cnn"), help="the stage's saved nets")
    ap.add_argument("--probes", default="gauss,anchor", help="comma-separated: gauss, anchor")
    ap.add_argument("--n", type=int, default=200, help="first N test images (the stage's)")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5], help="noise scales, in units of eps")
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.1, help="the surrogate's, as the stage's kwta.temperature")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/kwta_probes.json"))
    args = ap.parse_args()
    probes = args.probes.split(",")
    if unknown := set(probes) - {"gauss", "anchor"}:
        raise SystemExit(f"--probes: unknown {sorted(unknown)}, expected gauss and/or anchor")
    test = data.load(Path("data/raw/mnist.npz"), "test", limit=args.n)
    x, y = test.x, test.y
    nets = {act: models.load(args.models / act) for act in ("relu", "kwta", "kwta_batch")}
    twin_ok = evaluate.predict(nets["relu"], x, 250) == y  # the stage's subset rule: matched on the twin
    rows, t0 = [], time.time()
    for act in ("kwta", "kwta_batch"):
        batch = 32 if act == "kwta_batch" else 250  # the blog's layer in the batches it is scored in, as the stage
        torch.manual_seed(args.seed)
        if "gauss" in probes:
            rows += [{"model": act, **r} for r in gauss(nets[act], x, y, twin_ok, batch, args.temperature,
                                                        args.sigmas, args.draws, args.seed)]
        if "anchor" in probes and act == "kwta_batch":
            for objective in ("ce", "up", "down"):
                rows.append({"model": act, **anchor(nets[act], x, y, batch, args.temperature, objective)})
        for r in rows:
            if r["model"] == act:
                print(r, flush=True)
    store.save_json(args.out, {"eps": EPS, "settings": vars(args) | {"models": str(args.models), "out": str(args.out)},
                               "rows": rows, "seconds": time.time() - t0, "provenance": store.provenance("cpu")})
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
