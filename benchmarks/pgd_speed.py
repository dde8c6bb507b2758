"""Benchmark: PGD-Linf (20 steps) on the CIFAR-10 source model, ours against torchattacks on the same inputs.

    python benchmarks/pgd_speed.py [--model data/models/train_cifar] [--n 1000] [--batch 250] [--repeats 3]

Prints examples per second for both, the ratio (ours / peer; >= 1.0 means ours is at least as fast) and the robust
accuracy each reached (they should agree within noise: the same attack, independently implemented).
Needs the fetched data and the trained model: run `dvc repro train_cifar` first.
"""
import argparse
import time
from pathlib import Path

import torch
import torchattacks

from advrep import attacks, data, models


def timed(fn, x, y, batch, repeats):
    best, acc = float("inf"), None
    for _ in range(repeats):
        torch.manual_seed(0)
        t0 = time.perf_counter()
        outs = [fn(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]
        best = min(best, time.perf_counter() - t0)
        acc = torch.cat(outs).float().mean().item()
    return len(x) / best, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("data/models/train_cifar"))
    ap.add_argument("--data", type=Path, default=Path("data/raw/cifar10.npz"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--alpha", type=float, default=2 / 255)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = models.load(args.model, device)
    test = data.load(args.data, "test", limit=args.n)
    x, y = test.x.to(device), test.y.to(device)
    threat = attacks.Linf(args.eps)

    def ours(xb, yb):
        r = attacks.pgd(model, xb, yb, threat, args.steps, args.alpha)
        return r.logits.argmax(1) == yb

    peer_attack = torchattacks.PGD(model, eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=True)

    def peer(xb, yb):
        adv = peer_attack(xb, yb)
        with torch.no_grad():
            return model(adv).argmax(1) == yb

    ours(x[:8], y[:8]), peer(x[:8], y[:8])  # warm-up
    peer_rate, peer_acc = timed(peer, x, y, args.batch, args.repeats)
    ours_rate, ours_acc = timed(ours, x, y, args.batch, args.repeats)
    print(f"PGD-Linf eps {args.eps:.4f}, step {args.alpha:.4f}, {args.steps} steps, {args.n} CIFAR-10 test images, "
          f"batch {args.batch}, device {device}, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"  advrep       {ours_rate:8.1f} examples/s   robust accuracy {100 * ours_acc:.1f}%")
    print(f"  torchattacks {peer_rate:8.1f} examples/s   robust accuracy {100 * peer_acc:.1f}%")
    print(f"  ratio (advrep / torchattacks): {ours_rate / peer_rate:.2f}")


if __name__ == "__main__":
    main()
