"""Throughput against the machine: for each model the default pipeline trains or attacks, training images/s and
PGD image-steps/s of advrep beside (a) a plain eager PyTorch loop on the same model with torch's defaults (NCHW,
fp32, torch's dense kernel and torch.topk for k-WTA's selection, SGD's default update), (b) torchattacks' PGD on the
same model and images (on torch's defaults, and on advrep's kernels: the loop alone), and (c) the machine's measured
GEMM GFLOP/s on the same threads (torch's matmul and oneDNN's, fp32 and bf16; the higher of each is the peak), with
each model's FLOPs per image, so that the achieved fraction of that peak is printed.

    python benchmarks/throughput.py            # writes reports/benchmarks/throughput.json, prints a table

Run it on a quiet machine: two heavy jobs on two cores slow both. Every number is the best of `--repeats` timed runs
of at least MIN_SECONDS each, after a warm-up (the minimum is the least disturbed measurement); a baseline and
advrep's version are timed in turns (`in_turns`), so that the VM's drift does not enter their ratio.
"""
from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from advrep import attacks as A
from advrep import models, robust, store, train
from advrep.config import OptimConfig, TrainConfig

# name: (models.build config, input shape, train batch, train recipe (amp, channels_last), attack eps)
MODELS = {
    "MNIST CNN (train_mnist, kwta twin)": ({"arch": "mnist_cnn", "widths": [32, 64, 128], "dataset": "mnist"},
                                           (1, 28, 28), 128, dict(amp=False, channels_last=True), 0.1),
    "MNIST CNN, k-WTA": ({"arch": "mnist_cnn", "widths": [32, 64, 128], "dataset": "mnist", "activation": "kwta",
                          "gamma": 0.1}, (1, 28, 28), 200, dict(amp=False, channels_last=True), 0.1),
    "CIFAR net 32/64/64 (train_cifar, nrf, kwta)": ({"arch": "cifar_cnn", "widths": [32, 64, 64],
                                                     "dataset": "cifar10"}, (3, 32, 32), 512,
                                                    dict(amp=False, channels_last=True), 8 / 255),
    "CIFAR net 16/32/32 stem 16, PGD-1 (sat)": ({"arch": "cifar_cnn", "widths": [16, 32, 32, 16],
                                                 "dataset": "cifar10"}, (3, 32, 32), 512,
                                                dict(amp=True, channels_last=True, pgd1=True), 4 / 255),
    "FC100-100-10 sigmoid (szegedy)": ({"arch": "mlp", "widths": [100, 100], "activation": "sigmoid",
                                        "dataset": "mnist"}, (1, 28, 28), 128, dict(amp=False, channels_last=False),
                                       0.1),
    "maxout 240x240 (goodfellow)": ({"arch": "maxout", "widths": [240, 240], "dataset": "mnist"}, (1, 28, 28), 128,
                                    dict(amp=False, channels_last=False), 0.25),
}


MIN_SECONDS = 0.5  # each timed run calls fn enough times to last this long: a 3 ms MLP step is noise otherwise


def cpu_model() -> str:
    """The CPU's name: rates and ratios differ between an AMD EPYC and an Intel Xeon."""
    return models.cpu_info("model name") or platform.processor() or platform.machine()


def in_turns(fns: list, repeats: int) -> list[float]:
    """Seconds per call of each fn, the best of `repeats` rounds in which every fn is timed in turn (ABAB...): on a
    shared VM whose speed drifts over minutes, a baseline timed in one block and advrep in a later one would carry
    the drift into their ratio."""
    calls = []
    for fn in fns:
        t = time.perf_counter()
        fn()  # warm-up: first-call allocations, oneDNN kernel choice
        calls.append(max(1, round(MIN_SECONDS / max(time.perf_counter() - t, 1e-6))))
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for i, (fn, k) in enumerate(zip(fns, calls)):
            t = time.perf_counter()
            for _ in range(k):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t) / k)
    return best


def matmul_gflops(repeats: int, n: int = 2048, dtype=torch.float32) -> dict[str, float]:
    """The machine's GEMM rate two ways: torch's matmul (MKL on x86 wheels) of two n x n matrices and oneDNN's (a
    1x1 convolution in channels-last layout is a GEMM of [pixels, channels] by [channels, channels]: 2n pixels and
    n / 4 channels, 4,096 x 512 x 512 at n = 2048). The higher is the peak the fractions are taken of; on AMD CPUs
    the two differ by about 2x."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    c, hw = n // 4, math.isqrt(2 * n)  # 4,096 pixels x 512 channels x 512 channels at n = 2048
    x = torch.randn(1, c, hw, hw, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, 1, 1, dtype=dtype).contiguous(memory_format=torch.channels_last)
    t_mkl, t_dnn = in_turns([lambda: a @ b, lambda: F.conv2d(x, w)], repeats)
    mkl, onednn = 2 * n ** 3 / t_mkl / 1e9, 2 * hw * hw * c * c / t_dnn / 1e9
    return {"matmul": mkl, "onednn_gemm": onednn, "peak": max(mkl, onednn)}


def flops(model, x, train_step: bool) -> float:
    """FLOPs per image of a training step (forward + backward to the weights and activations) or of an attack step
    (forward + backward to the input only: no weight gradients), as torch's counter counts them."""
    y = torch.zeros(len(x), dtype=torch.long)
    with FlopCounterMode(display=False) as fc:
        if train_step:
            F.cross_entropy(model(x), y).backward()
        else:  # frozen weights: backward reaches the input alone, as autograd.grad(loss, x_adv) does in an attack
            with A.eval_mode(model):
                xa = x.clone().requires_grad_(True)
                F.cross_entropy(model(xa), y).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / len(x)


def plain_train(spec, x, y, batches: int):
    """A plain eager loop with torch's defaults: NCHW fp32, torch's dense kernel and top-k, SGD with its default
    update, cross-entropy; no layout, no autocast."""
    torch.manual_seed(0)
    model = models.build(spec).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def run():
        with models.torch_defaults():
            for i in range(batches):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return run


def ours_train(spec, x, y, batches: int, recipe: dict):
    """advrep's training step as train.fit runs it: the recipe's layout and autocast (and SAT's PGD-1 objective)."""
    torch.manual_seed(0)
    model = models.build(spec).train()
    cfg = TrainConfig(epochs=1, batch_size=len(x), amp=recipe["amp"], channels_last=recipe["channels_last"])
    dev = torch.device("cpu")
    cl = cfg.channels_last and x.ndim == 4  # as train.fit decides
    if cl:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = train.make_optimizer(model, OptimConfig(lr=0.01))
    amp = cfg.amp and train.bf16_native(dev)
    objective = (robust.pgd_objective(A.Linf(4 / 255), 1, 4 / 255) if recipe.get("pgd1") else
                 lambda m, xb, yb: F.cross_entropy(m(xb), yb))

    def run():
        for i in range(batches):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = objective(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return run, amp


def plain_pgd1_train(spec, x, y, batches: int):
    """The eager baseline of a PGD-1 training step: one signed step from a random start, then the update."""
    torch.manual_seed(0)
    model = models.build(spec).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    eps = 4 / 255

    @models.torch_defaults()
    def run():
        for i in range(batches):
            model.eval()
            xa = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1).requires_grad_(True)
            g, = torch.autograd.grad(F.cross_entropy(model(xa), y), xa)
            xa = (xa.detach() + eps * g.sign()).clamp(x - eps, x + eps).clamp(0, 1)
            model.train()
            loss = F.cross_entropy(model(xa), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return run


def markdown(out: dict) -> str:
    """The README's table, from the json."""
    rows = ["| model | training img/s (precision, layout) | vs plain eager | of peak | PGD image-steps/s | "
            "vs torchattacks (both on advrep's kernels) | of peak |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in out["models"]:
        rows.append(f"| {r['model']} | {r['train_images_per_s']:,.0f} ({r['train_precision']}, {r['train_layout']}) | "
                    f"{r['train_vs_eager']:.2f}x | {100 * r['train_fraction_of_peak']:.0f}% | "
                    f"{r['attack_image_steps_per_s']:,.0f} | {r['attack_vs_torchattacks']:.2f}x "
                    f"({r['attack_vs_torchattacks_same_dense_kernel']:.2f}x) | {100 * r['attack_fraction_of_peak']:.0f}% |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=6, help="training steps per timed run")
    ap.add_argument("--attack-n", type=int, default=500, help="images per attack")
    ap.add_argument("--steps", type=int, default=10, help="PGD steps")
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/throughput.json"))
    ap.add_argument("--only", default="", help="time only the models whose name contains this text")
    args = ap.parse_args()
    import torchattacks

    threads = torch.get_num_threads()
    native_bf16 = train.bf16_native(torch.device("cpu"))
    # without native bf16 instructions torch's bf16 matmul is emulated at well under 1 GFLOP/s (AMD EPYC without
    # AVX-512, measured): at 2048 it took four of the benchmark's nine minutes to print 0, so there its rate is
    # taken at 512 (a smaller GEMM runs nearer its peak, if anything), enough to show autocast would not pay
    def gemm_rates():
        return {"fp32": matmul_gflops(args.repeats),
                "bf16": matmul_gflops(args.repeats, n=2048 if native_bf16 else 512, dtype=torch.bfloat16)}
    gemm = gemm_rates()
    rows = []
    # Baselines and advrep are timed in turns, in one process; so the plain loop also runs on advrep's allocator
    # setting (tune_cpu_allocator is process-wide glibc state): the training ratios leave out its gain.
    train.tune_cpu_allocator()
    plain = {}
    for name, (spec, shape, bs, recipe, eps) in MODELS.items():
        if args.only not in name:
            continue
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(bs, *shape, generator=g), torch.randint(0, 10, (bs,), generator=g)
        base = plain_pgd1_train(spec, x, y, args.batches) if recipe.get("pgd1") else plain_train(spec, x, y, args.batches)
        run, amp = ours_train(spec, x, y, args.batches, recipe)
        t_plain, t_ours = in_turns([base, run], args.repeats)
        plain[name], ours = bs * args.batches / t_plain, bs * args.batches / t_ours
        model = models.build(spec).eval()
        convnet = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        attack_flops = flops(model, x[:8], False)
        # a PGD-1 training step is an attack step, then the training step on its output
        per_train = flops(models.build(spec), x[:8], True) + (attack_flops if recipe.get("pgd1") else 0)
        xa = torch.rand(args.attack_n, *shape, generator=g)
        ya = torch.randint(0, 10, (args.attack_n,), generator=g)
        step = 2.5 * eps / args.steps
        # torchattacks on its own copy (same weights): nothing advrep does to its model's layout can reach it
        theirs = models.build(spec).eval()
        theirs.load_state_dict(model.state_dict())
        ta = torchattacks.PGD(theirs, eps=eps, alpha=step, steps=args.steps, random_start=True)
        def ta_defaults():  # torchattacks as a user runs it: the model on torch's defaults
            with models.torch_defaults():
                ta(xa, ya)

        t_ta, t_ta_same, t_us = in_turns([ta_defaults, lambda: ta(xa, ya),  # and on advrep's kernels: the loop alone
                                          lambda: A.pgd(model, xa, ya, A.Linf(eps), args.steps, step)], args.repeats)
        steps_s = lambda t: args.attack_n * args.steps / t  # noqa: E731
        rows.append({
            "model": name, "train_batch": bs, "train_precision": "bf16 autocast" if amp else "fp32",
            "train_layout": "channels-last" if recipe["channels_last"] and convnet else "NCHW",
            "train_images_per_s": ours, "train_plain_eager_images_per_s": plain[name],
            "train_vs_eager": ours / plain[name], "train_flops_per_image": per_train,
            "attack_image_steps_per_s": steps_s(t_us), "attack_torchattacks_image_steps_per_s": steps_s(t_ta),
            "attack_vs_torchattacks": t_ta / t_us, "attack_vs_torchattacks_same_dense_kernel": t_ta_same / t_us,
            "attack_flops_per_image_step": attack_flops,
        })  # the fractions of the peak are added at the end, from the peak measured on both sides of the models
        r = rows[-1]
        print(f"{name}: train {r['train_images_per_s']:.0f} img/s ({r['train_vs_eager']:.2f}x eager), PGD "
              f"{r['attack_image_steps_per_s']:.0f} img-steps/s ({r['attack_vs_torchattacks']:.2f}x torchattacks); "
              "fractions of the peak in the table at the end", flush=True)
    # the peak is measured again after the models and the higher rate kept: on a VM whose speed drifts, a peak
    # taken in a slow minute made fractions above 100% (an AMD EPYC's oneDNN GEMM read 30 GFLOP/s in one run, 63-71
    # in the runs around it)
    again = gemm_rates()
    for kind, rates in gemm.items():
        for k in rates:
            rates[k] = max(rates[k], again[kind][k])
    for r in rows:
        peak = gemm["bf16" if r["train_precision"] == "bf16 autocast" else "fp32"]["peak"]
        r["train_fraction_of_peak"] = r["train_images_per_s"] * r["train_flops_per_image"] / (peak * 1e9)
        r["attack_fraction_of_peak"] = (r["attack_image_steps_per_s"] * r["attack_flops_per_image_step"]
                                        / (gemm["fp32"]["peak"] * 1e9))
    out = {"machine": {"processor": cpu_model(), "threads": threads,
                       "torch": torch.__version__, "gemm_gflops": gemm,
                       "avx512_bf16": native_bf16},
           "settings": vars(args) | {"out": str(args.out)}, "models": rows,
           "provenance": store.provenance("cpu")}
    store.save_json(args.out, out)
    print(markdown(out))
    print(f"GEMM GFLOP/s on {threads} threads: " + "; ".join(
        f"{k}: matmul {v['matmul']:.0f}, oneDNN {v['onednn_gemm']:.0f}" for k, v in gemm.items())
        + f"; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
