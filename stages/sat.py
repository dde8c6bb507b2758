"""sat: Smooth Adversarial Training (Xie et al. 2020) on CIFAR-10: does a smooth activation make single-step
adversarial training more robust than ReLU at the same accuracy and cost?

Every configuration (one per activation, plus the three non-trivial cells of the gradient-quality ablation: ReLU
forward with parametric softplus's derivative for the attacker, the optimizer, or both) is adversarially trained
once per seed with a PGD-1 attacker (random start, L-inf). After every epoch a held-out batch is attacked with
multi-step PGD, to catch catastrophic overfitting. Each model is then evaluated with PGD at several step counts,
FGSM, a huge-eps check, and AutoAttack on a subset for the configurations named in the params.

Outputs: data/sat/ (models, run record), reports/metrics/sat.json (mean and spread over seeds),
reports/plots/sat.csv (one row per configuration, seed and attack), reports/tables/sat_monitor.csv (per-epoch
monitor), reports/tables/sat_flags.csv (Carlini et al.'s sanity flags).
"""
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from advrep import attacks, config, data, evaluate, models, robust, store, train

log = store.logger("sat")
OUT = Path("data/sat")
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


def main() -> int:
    _, cfg = config.for_stage(__doc__, "sat")
    t0 = time.time()
    device = train.pick_device(cfg.device)
    raw = Path("data/raw") / f"{cfg.data.dataset}.npz"
    trainset = data.subset(data.load(raw, "train"), cfg.data.train_limit, cfg.seed)
    test = data.load(raw, "test", limit=cfg.data.test_limit)
    if cfg.eval.n + cfg.monitor.n > len(test):
        raise SystemExit(f"params.yaml: sat.eval.n + sat.monitor.n must fit in the {len(test)} test images")
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
                objective, desc=f"{c['name']} seed {seed}", on_epoch=hook,
                tag=f"{a.model_dump()} {c['attacker_smooth']} {c['optimizer_smooth']}")
            train_seconds = time.time() - t
            models.save(model, OUT / c["name"].replace(" ", "_").replace(",", "") / f"seed{seed}")
            monitor += [{"config": c["name"], "seed": seed, **h} for h in history]
            torch.manual_seed(seed)
            df = evaluate.robustness(model, x, y, specs, [ev.eps, ev.large_eps], cfg.train.eval_batch_size)
            if c["name"] in ev.autoattack_for and seed == cfg.seeds[0] and ev.autoattack_n:
                aa = evaluate.AttackSpec(name="AutoAttack", kind="autoattack", max_n=ev.autoattack_n)
                df = pd.concat([df, evaluate.robustness(model, x, y, [aa], [ev.eps], cfg.train.eval_batch_size)],
                               ignore_index=True)
            f = evaluate.sanity_flags(df, large_eps={a.norm: ev.large_eps})
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
    store.save_json("reports/metrics/sat.json", metrics)
    store.save_csv("reports/plots/sat.csv", table)
    store.save_csv("reports/tables/sat_monitor.csv", pd.DataFrame(monitor))
    store.save_csv("reports/tables/sat_flags.csv", flags)
    run = store.finish("sat", cfg, t0, str(device), OUT)
    log.info(f"sat: {len(main_rows)} runs in {run['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
