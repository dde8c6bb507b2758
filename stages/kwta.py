"""kwta: Xiao et al. 2020's k-Winners-Take-All against ReLU twins, under standard and adaptive attacks.

For each dataset: train the same architecture with each activation (ReLU, k-WTA, ReLU followed by k-WTA) with the
same recipe and seed, then attack every model over an eps grid with FGSM and PGD (its own gradients), and with
attacks that do not trust them: BPDA through a smooth surrogate of k-WTA, PGD transferred from the ReLU twin, the
gradient-free margin attack of Tramer et al. 2020, and AutoAttack. Carlini et al.'s sanity flags per model.

Outputs: data/kwta/ (models, run record), reports/metrics/kwta.json, reports/plots/kwta.csv (accuracy per
dataset, model, attack and eps), reports/tables/kwta_flags.csv, reports/tables/kwta_training.csv.
"""
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from advrep import attacks, config, data, evaluate, models, robust, store, train

log = store.logger("kwta")
OUT = Path("data/kwta")


def attack_specs(cfg, model, twin, via) -> list[evaluate.AttackSpec]:
    """The configured attacks for one model. Transfer needs the ReLU twin and BPDA a k-WTA layer to bypass: on the
    ReLU model itself both would only repeat PGD, so they are left out there."""
    specs = []
    for a in cfg.attacks:
        kw = a.model_dump()
        if a.kind == "transfer":
            if twin is None:
                continue
            kw["surrogate"] = twin
        if a.kind == "bpda":
            if via is None:
                continue
            kw["via"] = via
        specs.append(evaluate.AttackSpec(**kw))
    return specs


def main() -> int:
    _, cfg = config.for_stage(__doc__, "kwta")
    t0 = time.time()
    device = train.pick_device(cfg.device)
    tables, flags, training = [], [], []
    for ds, d in cfg.datasets.items():
        raw = Path("data/raw") / f"{ds}.npz"
        trainset = data.subset(data.load(raw, "train"), d.data.train_limit, cfg.seed)
        test = data.load(raw, "test", limit=d.data.test_limit)
        objective = None
        if d.adversarial is not None:
            a = d.adversarial
            objective = robust.pgd_objective(attacks.threat(a.norm, a.eps), a.steps, a.step, a.random_start)
        nets = {}
        for act in cfg.activations:
            spec = d.model.spec(ds, activation=act, gamma=cfg.gamma if "kwta" in act else None)
            log.info(f"{ds}: training {d.model.arch} with {act} on {len(trainset)} images, {d.train.epochs} epochs")
            t = time.time()
            model, history = train.train_model(spec, trainset, test, d.train, d.optim, cfg.seed, device,
                                               Path("data/checkpoints") / f"kwta_{ds}_{act}.pt", objective,
                                               desc=f"{ds} {act}")
            models.save(model, OUT / ds / act)
            nets[act] = model
            training += [{"dataset": ds, "activation": act, **h} for h in history]
            log.info(f"{ds} {act}: clean test accuracy {history[-1]['test_acc']:.4f} ({time.time() - t:.0f}s)")

        x, y = test.x[:d.n].to(device), test.y[:d.n].to(device)
        relu = nets["relu"]
        for act, model in nets.items():
            has_kwta = any(isinstance(m, models.KWTA) for m in model.modules())
            via = attacks.with_bpda(model, lambda m: isinstance(m, models.KWTA),
                                    lambda m: models.SoftKWTA(m.gamma, cfg.temperature)) if has_kwta else None
            specs = attack_specs(cfg, model, relu if act != "relu" else None, via)
            fast = [s for s in specs if not s.slow and s.kind != "fgsm"]
            fgsm = [s for s in specs if s.kind == "fgsm"]
            slow = [s for s in specs if s.slow and (cfg.slow_for is None or act in cfg.slow_for)]
            torch.manual_seed(cfg.seed)
            t = time.time()
            df = pd.concat([evaluate.robustness(model, x, y, fgsm, sorted({*d.eps, *d.fgsm_eps}), cfg.batch_size),
                            evaluate.robustness(model, x, y, fast, d.eps, cfg.batch_size),
                            evaluate.robustness(model, x, y, slow, d.slow_eps, cfg.batch_size)], ignore_index=True)
            df.insert(0, "model", act)
            df.insert(0, "dataset", ds)
            tables.append(df)
            f = evaluate.sanity_flags(df, large_eps={"linf": d.large_eps})
            f.insert(0, "model", act)
            f.insert(0, "dataset", ds)
            flags.append(f)
            log.info(f"{ds} {act}: {len(df)} evaluations in {time.time() - t:.0f}s; flags triggered: "
                     f"{', '.join(f.loc[f.triggered, 'flag']) or 'none'}")
    table, flags = pd.concat(tables, ignore_index=True), pd.concat(flags, ignore_index=True)
    metrics = {f"{ds} {m}": {f"{a} eps {e:.4g}": round(acc, 4) for a, e, acc in
                             zip(g["attack"], g["eps"], g["robust_acc"])}
               for (ds, m), g in table.groupby(["dataset", "model"], sort=False)}
    metrics["flags_triggered"] = {f"{ds} {m}": int(g["triggered"].sum())
                                  for (ds, m), g in flags.groupby(["dataset", "model"], sort=False)}
    store.save_json("reports/metrics/kwta.json", metrics)
    store.save_csv("reports/plots/kwta.csv", table)
    store.save_csv("reports/tables/kwta_flags.csv", flags)
    store.save_csv("reports/tables/kwta_training.csv", pd.DataFrame(training))
    run = store.finish("kwta", cfg, t0, str(device), OUT)
    log.info(f"kwta: done in {run['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
