"""nrf_generate: Ilyas et al. 2019's non-robust CIFAR-10 training sets. Each training image (a seeded subset, if
the params ask for one) is pushed by targeted L2 PGD (paper: eps 0.5, normalised steps of 0.1) towards a new label
against the clean source model: D_det with t = (y + 1) mod 10, D_rand with t drawn uniformly from the other classes.
With a robust source model configured, D_det is also built from it (the paper's Table 9 control); with `paper_eps`
set, D_det is also built at that eps (when the default profile's eps departs from the paper's).

Outputs: data/nrf/{det,rand,det_robust,det_paper_eps}.npz (see advrep.nonrobust), data/nrf/run.json,
reports/metrics/nrf_generate.json (attack success rate and distortion per set), reports/figures/nrf_examples.png.
Stopped runs resume from the finished chunks under data/checkpoints/nrf/.
"""
import hashlib
import sys
import time
from pathlib import Path

from advrep import attacks, config, data, models, nonrobust, store, train
from advrep.figures import example_grid

log = store.logger("nrf_generate")
OUT = Path("data/nrf")


def fingerprint(model_dir: str) -> str:
    return hashlib.sha256((Path(model_dir) / "model.pt").read_bytes()).hexdigest()[:16]


def main() -> int:
    _, cfg = config.for_stage(__doc__, "nrf_generate")
    t0 = time.time()
    device = train.pick_device(cfg.device)
    if device.type == "cpu":
        train.tune_cpu_allocator()
    trainset = data.subset(data.load(Path("data/raw/cifar10.npz"), "train"), cfg.train_limit, cfg.seed)
    which = hashlib.sha256(trainset.index.numpy().tobytes()).hexdigest()[:16]
    # name: (source model, relabelling, eps, step)
    sources = {"det": (cfg.source, "det", cfg.eps, cfg.step), "rand": (cfg.source, "rand", cfg.eps, cfg.step)}
    if cfg.robust_source is not None:
        sources["det_robust"] = (cfg.robust_source, "det", cfg.eps, cfg.step)
    if cfg.paper_eps is not None:
        sources["det_paper_eps"] = (cfg.source, "det", cfg.paper_eps, cfg.step * cfg.paper_eps / cfg.eps)
    metrics = {}
    for name, (src_dir, mode, eps, step) in sources.items():
        src = models.load(src_dir, device)
        target = nonrobust.targets(trainset.y, mode, cfg.seed)
        key = nonrobust.key(fingerprint(src_dir), which, mode, cfg.seed, eps, step, cfg.steps)
        log.info(f"{name}: targeted L2 PGD (eps {eps:g}, {cfg.steps} steps of {step:g}) on {len(trainset)} "
                 f"images against {src_dir}")
        t = time.time()
        delta, ok = nonrobust.generate(src, trainset, target, attacks.L2(eps), cfg.steps, step, cfg.batch_size,
                                       Path("data/checkpoints/nrf") / name, cfg.chunk, key, device, desc=name)
        nonrobust.save(OUT / f"{name}.npz", trainset.index, target, trainset.y, delta, ok)
        metrics[name] = {**nonrobust.summary(delta, ok), "eps": eps, "source": src_dir,
                         "seconds": round(time.time() - t, 1)}
        log.info(f"{name}: success {metrics[name]['success_rate']:.3f}, mean L2 {metrics[name]['l2_mean']:.3f} "
                 f"({metrics[name]['seconds']:.0f}s)")
        if name == "det":
            x = trainset.x[:8]
            example_grid(x, (x + delta[:8]).clamp(0, 1), trainset.y[:8], target[:8], src,
                         "reports/figures/nrf_examples.png",
                         "D_det: originals (label -> source's prediction), non-robust versions (t = new label)",
                         classes=data.CLASSES["cifar10"])
    store.save_json("reports/metrics/nrf_generate.json", metrics)
    run = store.finish("nrf_generate", cfg, t0, str(device), OUT, metrics=metrics)
    log.info(f"nrf_generate: done in {run['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
