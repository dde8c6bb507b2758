"""robustness: attack the clean models over an eps grid with the attack library; write the table and sanity flags.

Outputs: reports/metrics/robustness.json (robust accuracy per model, attack and eps), reports/plots/robustness.csv
(the tidy table), reports/tables/robustness_flags.csv (Carlini et al.'s sanity flags), and the run record.
"""
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from advrep import config, data, evaluate, models, store, train

log = store.logger("robustness")


def main() -> int:
    _, cfg = config.for_stage(__doc__, "robustness")
    t0 = time.time()
    device = train.pick_device(cfg.device)
    specs = [evaluate.AttackSpec(**a.model_dump()) for a in cfg.attacks]
    tables, flags = [], []
    for name, target in cfg.models.items():
        model = models.load(Path("data/models") / name, device)
        test = data.load(Path("data/raw") / f"{model.config['dataset']}.npz", "test", limit=cfg.n)
        torch.manual_seed(cfg.seed)
        log.info(f"{name}: {len(specs)} attacks x {len(target.eps)} eps on {len(test)} test images")
        t = time.time()
        x, y = test.x.to(device), test.y.to(device)
        fast, slow = [s for s in specs if not s.slow], [s for s in specs if s.slow]
        df = pd.concat([evaluate.robustness(model, x, y, fast, target.eps, cfg.batch_size),
                        evaluate.robustness(model, x, y, slow, target.slow_eps, cfg.batch_size)], ignore_index=True)
        df.insert(0, "model", name)
        tables.append(df)
        f = evaluate.sanity_flags(df, large_eps={a.norm: target.large_eps for a in cfg.attacks})
        f.insert(0, "model", name)
        flags.append(f)
        log.info(f"{name}: done in {time.time() - t:.0f}s; flags triggered: "
                 f"{', '.join(f.loc[f.triggered, 'flag']) or 'none'}")
    table, flags = pd.concat(tables, ignore_index=True), pd.concat(flags, ignore_index=True)
    metrics = {m: {a: {f"eps {e:.4g}": round(acc, 4) for e, acc in zip(g2["eps"], g2["robust_acc"])}
                   for a, g2 in g.groupby("attack", sort=False)} for m, g in table.groupby("model", sort=False)}
    metrics["flags_triggered"] = int(flags["triggered"].sum())
    store.save_json("reports/metrics/robustness.json", metrics)
    store.save_csv("reports/plots/robustness.csv", table)
    store.save_csv("reports/tables/robustness_flags.csv", flags)
    run = store.finish("robustness", cfg, t0, str(device))
    log.info(f"robustness: {len(table)} rows, {metrics['flags_triggered']} flags, {run['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
