"""goodfellow: Goodfellow et al. 2015 on MNIST. FGSM at eps 0.25 against a shallow softmax classifier and a maxout
net (error and mean confidence on the adversarial examples), then the same nets trained with the FGSM objective
J~ = alpha J(x) + (1 - alpha) J(x + eps sign(grad J)), before and after, and error against eps for all of them.

Outputs: data/goodfellow/ (nets, run record), reports/metrics/goodfellow.json, reports/plots/goodfellow_eps.csv,
reports/tables/goodfellow.csv, reports/figures/goodfellow_examples.png.
"""
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from advrep import attacks, config, data, models, robust, store, train
from advrep.figures import example_grid

log = store.logger("goodfellow")
OUT = Path("data/goodfellow")


@torch.no_grad()
def fgsm_stats(model, x, y, eps, batch=2000):
    """Error rate and mean confidence (max softmax probability) on FGSM examples at eps (eps 0: clean)."""
    wrong, conf, conf_wrong = 0, 0.0, 0.0
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        with torch.enable_grad():
            xa = attacks.fgsm(model, xb, yb, eps).x if eps > 0 else xb
        p = F.softmax(model(xa), 1)
        c, pred = p.max(1)
        w = pred != yb
        wrong += w.sum().item()
        conf, conf_wrong = conf + c.sum().item(), conf_wrong + c[w].sum().item()
    return {"error": wrong / len(x), "confidence": conf / len(x), "confidence_when_wrong": conf_wrong / max(wrong, 1)}


def main() -> int:
    _, cfg = config.for_stage(__doc__, "goodfellow")
    t0 = time.time()
    device = train.pick_device(cfg.device)
    raw = Path("data/raw/mnist.npz")
    trainset, test = data.load(raw, "train"), data.load(raw, "test", limit=cfg.n_eval)
    x, y = test.x.to(device), test.y.to(device)
    rows, curves, trained = [], [], {}
    for net in cfg.nets:
        optim, spec = net.optim(cfg.optim), net.spec()
        for variant, objective in (("standard", None), ("FGSM-trained", robust.fgsm_objective(cfg.eps, cfg.alpha))):
            t = time.time()
            model, _ = train.train_model(spec, trainset, test, cfg.train, optim, cfg.seed, device,
                                         Path("data/checkpoints") / f"goodfellow_{net.name}_{variant}.pt",
                                         objective=objective, desc=f"{net.name} ({variant})")
            trained[(net.name, variant)] = model
            models.save(model, OUT / "nets" / f"{net.name}-{variant}")
            stats = {eps: fgsm_stats(model, x, y, eps) for eps in sorted({0.0, cfg.eps, *cfg.eps_curve})}
            clean, adv = stats[0.0], stats[cfg.eps]
            # PGD at the same eps tells real robustness from a masked FGSM direction (single-step training can
            # teach a net to make its own gradient sign useless without becoming robust)
            pgd = attacks.batched(attacks.pgd, model, x, y, 2000, threat=attacks.Linf(cfg.eps), steps=40,
                                  step_size=2.5 * cfg.eps / 40)
            rows.append({"net": net.name, "variant": variant, "clean_error": clean["error"],
                         "fgsm_error": adv["error"], "fgsm_confidence": adv["confidence"],
                         "fgsm_confidence_when_wrong": adv["confidence_when_wrong"],
                         "pgd40_error": 1 - (pgd.logits.argmax(1) == y).float().mean().item(),
                         "seconds": time.time() - t})
            curves += [{"net": net.name, "variant": variant, "eps": eps, **stats[eps]} for eps in cfg.eps_curve]
            log.info(f"{net.name} ({variant}): clean error {clean['error']:.4f}, FGSM eps {cfg.eps:g} error "
                     f"{adv['error']:.4f} at confidence {adv['confidence']:.3f}, PGD-40 error {rows[-1]['pgd40_error']:.4f} "
                     f"({rows[-1]['seconds']:.0f}s)")
    last = cfg.nets[-1].name
    m = trained[(last, "standard")]
    example_grid(x[:8], attacks.fgsm(m, x[:8], y[:8], cfg.eps).x, y[:8], None, m,
                 "reports/figures/goodfellow_examples.png", f"FGSM eps {cfg.eps:g} against {last}")
    metrics = {f"{r['net']} ({r['variant']})": {k: round(r[k], 4) for k in
                                                ("clean_error", "fgsm_error", "fgsm_confidence", "pgd40_error")}
               for r in rows}
    store.save_json("reports/metrics/goodfellow.json", metrics)
    store.save_csv("reports/tables/goodfellow.csv", pd.DataFrame(rows))
    store.save_csv("reports/plots/goodfellow_eps.csv", pd.DataFrame(curves))
    run = store.finish("goodfellow", cfg, t0, str(device), OUT)
    log.info(f"goodfellow: done in {run['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
