"""train_<name>: train a clean model from its params section; write the model, metrics, per-epoch plot, run record.

usage: python stages/train.py SECTION   (e.g. train_mnist; outputs under data/models/SECTION)
"""
import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from advrep import config, data, models, store, train

log = store.logger("train")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("section")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    try:
        cfg = config.load(args.section, args.params)
    except config.ParamsError as e:
        log.error(str(e))
        return 2
    t0 = time.time()
    out = Path("data/models") / args.section
    device = train.pick_device(cfg.device)
    raw = Path("data/raw") / f"{cfg.data.dataset}.npz"
    trainset = data.subset(data.load(raw, "train"), cfg.data.train_limit, cfg.seed)
    testset = data.load(raw, "test", limit=cfg.data.test_limit)
    torch.manual_seed(cfg.seed)
    model = models.build(cfg.model.model_dump() | {"dataset": cfg.data.dataset})
    log.info(f"{args.section}: {cfg.model.arch} ({models.param_count(model):,} parameters) on {len(trainset)} "
             f"{cfg.data.dataset} images, {cfg.train.epochs} epochs, device {device}")
    history = train.fit(
        model, trainset, testset, cfg.train, cfg.optim, cfg.seed, device,
        checkpoint=Path("data/checkpoints") / f"{args.section}.pt",
        key=train.run_key(cfg.model_dump(), len(trainset), data.sha256(trainset.x[:64].numpy())),
        desc=args.section,
    )
    final = train.evaluate(model, testset, cfg.train.eval_batch_size, device)
    train_eval = train.evaluate(model, data.subset(trainset, 10000, cfg.seed), cfg.train.eval_batch_size, device)
    seconds = time.time() - t0
    models.save(model, out)
    metrics = {"test_acc": final["acc"], "test_loss": final["loss"], "train_acc": train_eval["acc"],
               "epochs": cfg.train.epochs, "train_size": len(trainset), "test_size": len(testset),
               "parameters": models.param_count(model)}
    store.save_json(Path("reports/metrics") / f"{args.section}.json", metrics)
    store.save_csv(Path("reports/plots") / f"{args.section}.csv", pd.DataFrame(history))
    run = {"stage": args.section, "seed": cfg.seed, "params": cfg.model_dump(), "metrics": metrics,
           "wall_seconds": seconds, "train_seconds": sum(r["seconds"] for r in history),
           "provenance": store.provenance(str(device))}
    store.save_json(out / "run.json", run)
    store.save_json(Path("reports/runs") / f"{args.section}.json", run)
    (Path("data/checkpoints") / f"{args.section}.pt").unlink(missing_ok=True)
    log.info(f"{args.section}: test accuracy {final['acc']:.4f} after {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
