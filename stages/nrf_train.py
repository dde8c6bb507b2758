"""nrf_train: Ilyas et al. 2019, retraining. A freshly initialised model is trained on each non-robust set, once per
seed, and tested on the original CIFAR-10 test set (and, for the D_det-style sets, on the test set relabelled with
(y + 1) mod 10). D_det: no augmentation, LR 0.1; D_rand: augmentation, LR 0.01 (Table 3; all of it params).

Controls: the D_det images with their new labels but without the perturbation (the only thing that can carry the
signal is gone, so accuracy must be at or below chance), and D_det built from the robust source (Table 9).

Outputs: data/nrf_train/ (models, run record), reports/metrics/nrf_train.json (mean and spread over seeds),
reports/tables/nrf_train.csv (one row per set and seed), reports/plots/nrf_curves.csv (training curves, with the
accuracy on the first 2,000 test images after each epoch).
"""
import sys
import time
from pathlib import Path

import pandas as pd

from advrep import config, data, models, nonrobust, store, train

log = store.logger("nrf_train")
OUT = Path("data/nrf_train")
IN = Path("data/nrf")


def main() -> int:
    _, cfg = config.for_stage(__doc__, "nrf_train")
    t0 = time.time()
    device = train.pick_device(cfg.device)
    raw = Path("data/raw/cifar10.npz")
    source = data.load(raw, "train")
    test = data.load(raw, "test", limit=cfg.test_limit)
    shifted = data.Split(test.x, (test.y + 1) % 10, test.index)  # what a model of the robust features predicts
    curve = data.Split(test.x[:2000], test.y[:2000], test.index[:2000])  # per-epoch curves: a cheaper subset
    # name: (file, perturbed, train config, optimizer, seeds)
    every, one = cfg.seeds, cfg.seeds[:1]  # side checks run once: enough to see whether they carry any signal
    sets = {"D_det": ("det", True, cfg.det, cfg.det_optim, every),
            "D_rand": ("rand", True, cfg.rand, cfg.rand_optim, every)}
    if cfg.controls:
        sets["D_det without perturbation"] = ("det", False, cfg.det, cfg.det_optim, every)
        if (IN / "det_robust.npz").is_file():
            sets["D_det from robust source"] = ("det_robust", True, cfg.det, cfg.det_optim, every)
        # is D_rand's recipe (augmentation, a 10x lower LR) what hides its signal at this scale?
        sets["D_rand with D_det's recipe"] = ("rand", True, cfg.det, cfg.det_optim, one)
    if (IN / "det_paper_eps.npz").is_file():
        sets["D_det at the paper's eps"] = ("det_paper_eps", True, cfg.det, cfg.det_optim, one)
    rows, curves = [], []
    for name, (file, perturbed, tcfg, ocfg, seeds) in sets.items():
        ds = nonrobust.load(IN / f"{file}.npz", source, perturbed)
        slug = name.replace(" ", "_").replace("'", "")
        for seed in seeds:
            log.info(f"{name} seed {seed}: training {cfg.model.arch} on {len(ds)} images, {tcfg.epochs} epochs")
            t = time.time()
            model, history = train.train_model(
                cfg.model.spec("cifar10"), ds, curve, tcfg, ocfg, seed, device,
                Path("data/checkpoints") / f"nrf_{slug}_{seed}.pt", desc=f"{name} seed {seed}",
                tag=f"{file} perturbed={perturbed}")
            last = history[-1] | {
                "test_acc": train.evaluate(model, test, tcfg.eval_batch_size, device)["acc"],
                "test_acc_shifted": train.evaluate(model, shifted, tcfg.eval_batch_size, device)["acc"]}
            models.save(model, OUT / slug / f"seed{seed}")
            rows.append({"set": name, "seed": seed, "train_size": len(ds), "test_acc": last["test_acc"],
                         "test_acc_shifted": last["test_acc_shifted"], "train_loss": last["train_loss"],
                         "seconds": time.time() - t})
            curves += [{"set": name, "seed": seed, **h} for h in history]
            log.info(f"{name} seed {seed}: original test accuracy {last['test_acc']:.4f}, on (y+1) mod 10 "
                     f"{last['test_acc_shifted']:.4f} ({rows[-1]['seconds']:.0f}s)")
    table = pd.DataFrame(rows)
    metrics = {}
    for name, g in table.groupby("set", sort=False):
        metrics[name] = {"test_acc_mean": round(g["test_acc"].mean(), 4),
                         "test_acc_std": round(g["test_acc"].std(ddof=1), 4) if len(g) > 1 else 0.0,
                         "test_acc_shifted_mean": round(g["test_acc_shifted"].mean(), 4), "seeds": len(g)}
    store.save_json("reports/metrics/nrf_train.json", metrics)
    store.save_csv("reports/tables/nrf_train.csv", table)
    store.save_csv("reports/plots/nrf_curves.csv", pd.DataFrame(curves))
    run = store.finish("nrf_train", cfg, t0, str(device), OUT, metrics=metrics)
    log.info(f"nrf_train: done in {run['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
