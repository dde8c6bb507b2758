"""train_<name>: train a clean model from its params section; write the model, metrics, per-epoch plot, run record.

usage: python stages/train.py SECTION   (e.g. train_mnist; outputs under data/models/SECTION)
"""
import sys
import time
from pathlib import Path

import pandas as pd

from advrep import config, data, models, store, train

log = store.logger("train")


def main() -> int:
    section, cfg = config.for_stage(__doc__)
    t0 = time.time()
    out = Path("data/models") / section
    device = train.pick_device(cfg.device)
    raw = Path("data/raw") / f"{cfg.data.dataset}.npz"
    trainset = data.subset(data.load(raw, "train"), cfg.data.train_limit, cfg.seed)
    testset = data.load(raw, "test", limit=cfg.data.test_limit)
    log.info(f"{section}: {cfg.model.arch} on {len(trainset)} {cfg.data.dataset} images, "
             f"{cfg.train.epochs} epochs, device {device}")
    model, history = train.train_model(cfg.model.model_dump() | {"dataset": cfg.data.dataset}, trainset, testset,
                                       cfg.train, cfg.optim, cfg.seed, device,
                                       Path("data/checkpoints") / f"{section}.pt", desc=section)
    final = train.evaluate(model, testset, cfg.train.eval_batch_size, device)
    train_eval = train.evaluate(model, data.subset(trainset, 10000, cfg.seed), cfg.train.eval_batch_size, device)
    seconds = time.time() - t0
    models.save(model, out)
    metrics = {"test_acc": final["acc"], "test_loss": final["loss"], "train_acc": train_eval["acc"],
               "epochs": cfg.train.epochs, "train_size": len(trainset), "test_size": len(testset),
               "parameters": models.param_count(model)}
    store.save_json(Path("reports/metrics") / f"{section}.json", metrics)
    store.save_csv(Path("reports/plots") / f"{section}.csv", pd.DataFrame(history))
    store.finish(section, cfg, t0, str(device), out, metrics=metrics,
                 train_seconds=sum(r["seconds"] for r in history))
    log.info(f"{section}: test accuracy {final['acc']:.4f} after {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
