"""szegedy: Szegedy et al. 2014 on MNIST. Train the fully connected nets on halves P1 / P2, make minimal-distortion
examples with box-constrained L-BFGS, and measure how they (and FGSM / PGD examples) transfer between the nets.

Outputs: data/szegedy/ (nets, run record), reports/metrics/szegedy.json, reports/tables/szegedy_*.csv,
reports/figures/szegedy_examples.png.
"""
import sys
import time
from pathlib import Path

import pandas as pd

from advrep import attacks, config, data, models, store, train, transfer
from advrep.figures import example_grid

log = store.logger("szegedy")
OUT = Path("data/szegedy")


def main() -> int:
    _, cfg = config.for_stage(__doc__, "szegedy")
    t0 = time.time()
    device = train.pick_device(cfg.device)
    raw = Path("data/raw/mnist.npz")
    full, test = data.load(raw, "train"), data.load(raw, "test")
    p1, p2 = transfer.halves(len(full), cfg.split_seed)
    parts = {"P1": data.Split(full.x[p1], full.y[p1], p1), "P2": data.Split(full.x[p2], full.y[p2], p2), "all": full}

    nets, rows = {}, []
    for i, net in enumerate(cfg.nets):
        optim, spec = net.optim(cfg.optim), net.spec()
        t = time.time()
        # each net its own seed: FC100-100-10 and FC100-100-10' must not share their initial weights
        model, _ = train.train_model(spec, parts[net.part], test, cfg.train, optim, cfg.seed + i, device,
                                     Path("data/checkpoints") / f"szegedy_{net.name}.pt", desc=net.name)
        nets[net.name] = model
        models.save(model, OUT / "nets" / net.name)
        rows.append({"net": net.name, "part": net.part, "activation": net.activation,
                     "weight_decay": optim.weight_decay, "parameters": models.param_count(model),
                     "train_error": transfer.error_rate(model, parts[net.part].x.to(device), parts[net.part].y.to(device)),
                     "test_error": transfer.error_rate(model, test.x.to(device), test.y.to(device)),
                     "train_seconds": time.time() - t})
        log.info(f"{net.name}: train error {rows[-1]['train_error']:.4f}, test error {rows[-1]['test_error']:.4f}")

    x, y = test.x[:cfg.lbfgs.n].to(device), test.y[:cfg.lbfgs.n].to(device)
    target = transfer.other_labels(y, cfg.seed)
    lb, fg, pg = {}, {}, {}
    for name, model in nets.items():
        t = time.time()
        b = cfg.lbfgs.batch_size
        res = attacks.Result.cat([attacks.lbfgs(model, x[i:i + b], target[i:i + b], c_init=cfg.lbfgs.c_init,
                                                search_steps=cfg.lbfgs.search_steps, max_iter=cfg.lbfgs.max_iter)
                                  for i in range(0, len(x), b)])
        lb[name] = res
        row = next(r for r in rows if r["net"] == name)
        row |= {"lbfgs_success": res.success.float().mean().item(),
                "mean_distortion": res.distortion[res.success].mean().item() if res.success.any() else float("nan"),
                "lbfgs_seconds": time.time() - t}
        fg[name] = attacks.fgsm(model, x, y, cfg.fgsm_eps).x
        pg[name] = attacks.pgd(model, x, y, attacks.Linf(cfg.fgsm_eps), cfg.pgd_steps,
                               2.5 * cfg.fgsm_eps / cfg.pgd_steps).x
        log.info(f"{name}: L-BFGS reached the target on {100 * row['lbfgs_success']:.1f}%, mean distortion "
                 f"{row['mean_distortion']:.4f} ({row['lbfgs_seconds']:.0f}s)")

    # Transfer table: only successful L-BFGS examples count as adversarial; failures keep the clean image.
    inputs = {}
    for name, res in lb.items():
        inputs[f"L-BFGS for {name}"] = res.x
    for name, res in lb.items():
        inputs[f"L-BFGS for {name}, amplified to {cfg.amplify_to:g}"] = transfer.amplify(x, res.x, cfg.amplify_to)
    for name, res in lb.items():
        d = res.distortion[res.success].mean().item()
        inputs[f"Gaussian noise, distortion {d:.3f} (as {name})"] = transfer.gaussian(x, d, cfg.seed)
    inputs[f"Gaussian noise, stddev {cfg.noise_std:g}"] = transfer.gaussian(x, cfg.noise_std, cfg.seed + 1)
    inputs["clean test images"] = x
    table = transfer.error_matrix(nets, inputs, y)
    grad_inputs = {f"FGSM eps {cfg.fgsm_eps:g} for {n}": v for n, v in fg.items()}
    grad_inputs |= {f"PGD-{cfg.pgd_steps} eps {cfg.fgsm_eps:g} for {n}": v for n, v in pg.items()}
    grad_table = transfer.error_matrix(nets, grad_inputs, y)

    first = cfg.nets[0].name
    example_grid(x[:8], lb[first].x[:8], y[:8], target[:8], nets[first], "reports/figures/szegedy_examples.png",
                 f"Minimal L-BFGS examples for {first}")
    metrics = {r["net"]: {k: round(v, 5) for k, v in r.items() if k in
                          ("train_error", "test_error", "mean_distortion", "lbfgs_success")} for r in rows}
    metrics["transfer"] = {f"{row} -> {col}": round(table.loc[row, col], 4)
                           for row in table.index if row.startswith("L-BFGS") for col in table.columns}
    store.save_json("reports/metrics/szegedy.json", metrics)
    store.save_csv("reports/tables/szegedy_nets.csv", pd.DataFrame(rows))
    store.save_csv("reports/tables/szegedy_transfer.csv", table.reset_index(names="inputs"))
    store.save_csv("reports/tables/szegedy_transfer_grad.csv", grad_table.reset_index(names="inputs"))
    run = store.finish("szegedy", cfg, t0, str(device), OUT, split_seed=cfg.split_seed,
                       P1_sha256=data.sha256(p1.numpy()), P2_sha256=data.sha256(p2.numpy()))
    log.info(f"szegedy: done in {run['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
