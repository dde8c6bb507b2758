"""Szegedy et al. 2014, "Intriguing properties of neural networks", on MNIST: the whole paper's MNIST experiments.
Schema, computation, run and report section.

- Units (Section 3): test images that maximise a hidden layer's activation along natural basis vectors and along
  random directions; how often the top images share one class, for both.
- Table 1: FC10(lambda) softmax regressions, FC100-100-10, FC200-200-10 and AE400-10 (a sparse-autoencoder layer,
  frozen, with a softmax on top), trained on all 60,000 images: train error, test error, and the mean minimal
  distortion of box-constrained L-BFGS. Table 2: examples made for each of them fed to every other, with
  Gaussian-noise rows.
- Tables 3 and 4: nets trained on halves P1 / P2 of the training set, the same transfer across models and across
  training sets, amplified examples and noise baselines. Gradient-sign examples transferred too, for comparison.
- Adversarial examples as a regulariser (Section 4.2): FC100-100-10 trained with a pool of L-BFGS examples mixed
  into every batch and partly replaced after every epoch, against the same net with weight decay alone.
- Spectral bounds (Section 4.3): an upper bound on each layer's Lipschitz constant (the operator norm of a dense
  layer, power iteration on a convolution, 1/4 for a sigmoid, 1 for ReLU and max-pooling), and their product.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from .. import attacks, data, models, robust, stats, store, train
from ..attacks import eval_mode, rms
from ..config import NetsExperiment, Strict

if TYPE_CHECKING:  # the report's plumbing is imported where a section runs, not by the stage
    from ..render import Context

log = store.logger("szegedy")
OUT = Path("data/szegedy")


class LbfgsConfig(Strict):
    n: int = Field(gt=0)  # test images attacked per net (the first N)
    search_steps: int = Field(10, gt=0)  # rounds of the search over c
    max_iter: int = Field(100, gt=0)  # L-BFGS iterations per round (attacks.box_lbfgs)
    c_init: float = Field(1.0, gt=0)
    batch_size: int = Field(1000, gt=0)


class Autoencoder(Strict):
    """The pretraining of a net with `pretrain: autoencoder` (AE400-10): a sigmoid layer trained to reconstruct its
    input through a tied decoder, with an L1 penalty on its activations (sparsity), then frozen."""

    epochs: int = Field(5, gt=0)
    lr: float = Field(1e-3, gt=0)  # Adam
    sparsity: float = Field(1e-3, ge=0)  # weight of the mean absolute activation in the loss
    batch_size: int = Field(128, gt=0)


class Units(Strict):
    """Section 3: which images maximise a hidden unit, and a random direction, of a trained MNIST net."""

    source: str = "data/models/train_mnist"  # the net whose last hidden layer (before the logits) is read
    directions: int = Field(64, gt=1)  # natural basis vectors (units, a seeded sample) and as many random directions
    top: int = Field(8, gt=1)  # test images kept per direction


class Regulariser(Strict):
    """Section 4.2: adversarial examples as a regulariser."""

    base: str  # the net of `nets` it is compared with (weight decay alone, same recipe)
    pool: int = Field(5000, gt=0)  # adversarial examples kept
    refresh: float = Field(0.5, gt=0, le=1)  # share of the pool replaced by fresh L-BFGS examples after every epoch
    mix: float = Field(0.5, gt=0, lt=1)  # share of every batch drawn from the pool
    lbfgs: LbfgsConfig  # the pool's attack (lighter than the evaluation's)


class Params(NetsExperiment):
    """Szegedy et al. 2014 on MNIST: units, Tables 1-4, adversarial training with a pool, spectral bounds."""

    split_seed: int = Field(0, ge=0)  # the P1/P2 split of the 60k training images
    table1: list[str]  # the nets of Table 1 / Table 2 (trained on all 60,000 images)
    table3: list[str]  # the nets of Tables 3 / 4 (P1 / P2); the first is the one whose examples are followed
    lbfgs: LbfgsConfig
    amplify_to: float = Field(0.1, gt=0)  # RMS distortion of the "amplified" rows
    noise_std: list[float] = [0.1, 0.3]  # Gaussian-noise rows (pixels in [0, 1])
    fgsm_eps: float = Field(0.1, gt=0)  # L-inf eps of the gradient-sign transfer table
    pgd_steps: int = Field(20, gt=0)
    autoencoder: Autoencoder = Autoencoder()
    units: Units = Units()
    regulariser: Optional[Regulariser] = None
    power_iterations: int = Field(50, gt=0)  # spectral bound of a convolution

    @model_validator(mode="after")
    def _refs(self):
        names = {n.name for n in self.nets}
        for key in ("table1", "table3"):
            missing = [n for n in getattr(self, key) if n not in names]
            if missing or not getattr(self, key):
                raise ValueError(f"{key}: {missing or 'empty'} not among the nets {sorted(names)}")
        if self.regulariser is not None and self.regulariser.base not in names:
            raise ValueError(f"regulariser.base: '{self.regulariser.base}' is not among the nets {sorted(names)}")
        return self


SECTIONS = {"szegedy": Params}


# ---------------------------------------------------------------------------------------------------------------
# Computation


def halves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split range(n) into two seeded random halves P1, P2 (sorted indices)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n // 2].sort().values, perm[n // 2:].sort().values


def amplify(x: torch.Tensor, x_adv: torch.Tensor, distortion: float) -> torch.Tensor:
    """Rescale each perturbation to RMS `distortion` (Szegedy's "amplified" examples), then clip to the box."""
    r = x_adv - x
    scale = distortion / rms(r).clamp_min(1e-12)
    return (x + r * scale.view(-1, *([1] * (x.ndim - 1)))).clamp(0, 1)


def gaussian(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """x plus N(0, std^2) noise per pixel, clipped to [0, 1]; the RMS distortion is then about std."""
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g).to(x.device)).clamp(0, 1)


@torch.no_grad()
def error_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    with eval_mode(model):
        wrong = sum((model(x[i:i + batch_size]).argmax(1) != y[i:i + batch_size]).sum().item()
                    for i in range(0, len(x), batch_size))
    return wrong / max(len(x), 1)


def error_matrix(models: dict[str, nn.Module], rows: dict[str, torch.Tensor], y: torch.Tensor) -> pd.DataFrame:
    """Error rate (w.r.t. the true labels y) of every model (columns) on every set of inputs (rows)."""
    return pd.DataFrame({name: [error_rate(m, x, y) for x in rows.values()] for name, m in models.items()},
                        index=list(rows))


def lbfgs_all(model: nn.Module, x: torch.Tensor, target: torch.Tensor, cfg: LbfgsConfig) -> attacks.Result:
    b = cfg.batch_size
    return attacks.Result.cat([attacks.lbfgs(model, x[i:i + b], target[i:i + b], c_init=cfg.c_init,
                                             search_steps=cfg.search_steps, max_iter=cfg.max_iter)
                               for i in range(0, len(x), b)])


def pretrain_autoencoder(images: data.Split, hidden: int, cfg: Autoencoder, seed: int,
                         device: torch.device) -> nn.Linear:
    """A sigmoid layer `hidden` wide trained to reconstruct (normalised) images through its tied transpose, with an
    L1 penalty on the activations: AE400-10's feature layer."""
    torch.manual_seed(seed)
    norm = models.Normalize(*data.STATS["mnist"]).to(device)
    enc = nn.Linear(784, hidden).to(device)
    bias = nn.Parameter(torch.zeros(784, device=device))
    opt = torch.optim.Adam([*enc.parameters(), bias], lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs):
        order = torch.randperm(len(images), generator=g)
        for i in range(0, len(images), cfg.batch_size):
            x = norm(images.x[order[i:i + cfg.batch_size]].to(device)).flatten(1)
            h = torch.sigmoid(enc(x))
            loss = F.mse_loss(h @ enc.weight + bias, x) + cfg.sparsity * h.abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return enc


def train_net(net, cfg: Params, trainset: data.Split, test: data.Split, seed: int, device: torch.device,
              objective=None, on_epoch=None, checkpoint: bool = True) -> tuple[nn.Module, list[dict]]:
    """One net of the paper: built from its config; an autoencoder-pretrained net gets its first layer from
    `pretrain_autoencoder`, frozen, and only the softmax on top is trained."""
    optim, spec = net.optim(cfg.optim), net.spec()
    ck = Path("data/checkpoints") / f"szegedy_{net.name}.pt" if checkpoint else None
    objective = penalised(net.penalty, objective)
    if net.pretrain != "autoencoder":
        return train.train_model(spec, trainset, test, cfg.train, optim, seed, device, ck, objective,
                                 desc=net.name, on_epoch=on_epoch)
    enc = pretrain_autoencoder(trainset, net.widths[0], cfg.autoencoder, seed, device)
    torch.manual_seed(seed)
    model = models.build(spec).to(device)
    first = model.body[1]
    with torch.no_grad():
        first.weight.copy_(enc.weight)
        first.bias.copy_(enc.bias)
    first.requires_grad_(False)  # not fine-tuned
    history = train.fit(model, trainset, test, cfg.train, optim, seed, device, objective=objective, desc=net.name)
    return model, history


def hidden_features(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """The activations of the last hidden layer (the input of the final Linear) of a models.Classifier."""
    body = model.body
    head = len(body) - 1
    with eval_mode(model), torch.no_grad():
        return torch.cat([body[:head](model.norm(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def unit_study(model: nn.Module, test: data.Split, cfg: Units, seed: int) -> dict:
    """Top test images along natural basis vectors (units) and random directions of the last hidden layer, and
    how often they share one class (purity: the share of the top images in their most common class)."""
    phi = hidden_features(model, test.x)
    g = torch.Generator().manual_seed(seed)
    d = phi.shape[1]
    units = torch.randperm(d, generator=g)[:min(cfg.directions, d)]
    natural = torch.eye(d)[units]
    rand = torch.randn(len(units), d, generator=g)
    rand = rand / rand.norm(dim=1, keepdim=True)
    out = {}
    for name, dirs in (("natural", natural), ("random", rand)):
        top = (phi @ dirs.T).topk(cfg.top, dim=0).indices.T  # [directions, top]
        labels = test.y[top]
        purity = [torch.bincount(row, minlength=10).max().item() / cfg.top for row in labels]
        out[name] = {"top": top, "purity": purity}
    out["units"] = units
    return out


def operator_norm(layer: nn.Module, shape: tuple, iterations: int, seed: int) -> float:
    """Largest singular value of a linear layer acting on inputs of `shape` (one example): exact for Linear,
    power iteration with the transposed convolution for Conv2d."""
    if isinstance(layer, nn.Linear):
        return torch.linalg.matrix_norm(layer.weight.detach(), ord=2).item()
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(1, *shape, generator=g)
    w = layer.weight.detach()
    kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    sigma = 0.0
    for _ in range(iterations):
        v = v / v.norm()
        u = F.conv2d(v, w, **kw)
        sigma = u.norm().item()
        v = F.conv_transpose2d(u, w, **kw, output_padding=_output_padding(shape, u.shape, layer))
    return sigma


def _output_padding(shape, out_shape, layer) -> tuple:
    h, w = shape[1:]
    out = []
    for size, o, s, p, k in zip((h, w), out_shape[2:], layer.stride, layer.padding, layer.kernel_size):
        out.append(size - ((o - 1) * s - 2 * p + k))
    return tuple(out)


def spectral(model: nn.Module, input_shape: tuple, iterations: int, seed: int = 0) -> list[dict]:
    """Per layer of a models.Classifier: an upper bound on its Lipschitz constant (L2), in order."""
    rows = [{"layer": "Normalize", "shape": f"{tuple(input_shape)}",
             "bound": 1 / model.norm.std.min().item()}]
    shape = tuple(input_shape)
    x = torch.zeros(1, *shape)
    with eval_mode(model), torch.no_grad():
        x = model.norm(x)
        for layer in model.body:
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                b = operator_norm(layer, tuple(x.shape[1:]), iterations, seed)
                desc = (f"{layer.in_features}x{layer.out_features}" if isinstance(layer, nn.Linear) else
                        f"{layer.in_channels}x{layer.kernel_size[0]}x{layer.kernel_size[1]}x{layer.out_channels}, "
                        f"stride {layer.stride[0]}")
                rows.append({"layer": type(layer).__name__, "shape": desc, "bound": b})
            elif isinstance(layer, nn.Sigmoid):
                rows.append({"layer": "Sigmoid", "shape": "", "bound": 0.25})
            elif isinstance(layer, models.Maxout):
                w = layer.linear.weight.detach().view(layer.units, layer.pieces, -1)
                # max over pieces of affine maps: Lipschitz at most that of the stacked map of all pieces
                rows.append({"layer": "Maxout", "shape": f"{w.shape[2]}x{layer.units}x{layer.pieces}",
                             "bound": torch.linalg.matrix_norm(w.flatten(0, 1), ord=2).item()})
            elif isinstance(layer, (nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Dropout)):
                if isinstance(layer, nn.MaxPool2d) and layer.stride != layer.kernel_size:
                    raise ValueError("overlapping max-pooling: its bound is not 1")
                rows.append({"layer": type(layer).__name__, "shape": "", "bound": 1.0})
            else:
                raise ValueError(f"no Lipschitz bound for layer {type(layer).__name__}")
            x = layer(x)
    return rows


def penalised(lambdas: Optional[list[float]], base=None):
    """The training loss (base, or cross-entropy) plus Szegedy et al.'s weight decay, lambda_l * sum(W_l^2) / k_l
    for the l-th weight layer with k_l output units; None when there is neither."""
    if not lambdas and base is None:
        return None

    def objective(model, x, y):
        loss = base(model, x, y) if base is not None else F.cross_entropy(model(x), y)
        layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if lambdas and len(lambdas) not in (1, len(layers)):
            raise ValueError(f"penalty: {len(lambdas)} values for {len(layers)} weight layers")
        for lam, layer in zip(lambdas * len(layers) if lambdas and len(lambdas) == 1 else (lambdas or []), layers):
            if layer.weight.requires_grad:
                loss = loss + lam * layer.weight.pow(2).sum() / layer.out_features
        return loss
    return robust.describe(objective, kind="szegedy_penalty", lambdas=lambdas,
                           base=None if base is None else base.spec)


def pool_objective(pool: dict, mix: float):
    """Section 4.2's training loss: every batch is extended by examples drawn from the adversarial pool (with their
    true labels) so that they make up `mix` of it; the pool is refreshed between epochs by `pool_refresher`."""
    def objective(model, x, y):
        if pool["x"] is None:
            return F.cross_entropy(model(x), y)
        k = max(1, round(len(x) * mix / (1 - mix)))
        idx = torch.randint(len(pool["x"]), (k,))
        xa, ya = pool["x"][idx].to(x.device), pool["y"][idx].to(x.device)
        return F.cross_entropy(model(torch.cat([x, xa])), torch.cat([y, ya]))
    return robust.describe(objective, kind="adversarial_pool", mix=mix)


def pool_refresher(pool: dict, trainset: data.Split, cfg: Regulariser, seed: int):
    """An on_epoch hook: replace `refresh` of the pool (all of it at first) with L-BFGS examples of random training
    images, made against the model as it is now, towards random other labels."""
    def on_epoch(epoch: int, model: nn.Module) -> dict:
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        k = cfg.pool if pool["x"] is None else max(1, round(cfg.refresh * cfg.pool))
        idx = torch.randperm(len(trainset), generator=g)[:k]
        x, y = trainset.x[idx], trainset.y[idx]
        res = lbfgs_all(model, x, data.other_labels(y, seed + epoch), cfg.lbfgs)
        if pool["x"] is None:
            pool["x"], pool["y"] = res.x.cpu(), y.clone()
        else:
            slots = torch.randperm(cfg.pool, generator=g)[:k]
            pool["x"][slots], pool["y"][slots] = res.x.cpu(), y
        return {"pool_success": res.success.float().mean().item(),
                "pool_distortion": res.distortion[res.success].mean().item() if res.success.any() else 0.0}
    return robust.describe(on_epoch, kind="pool_refresher", pool=cfg.pool, refresh=cfg.refresh,
                           lbfgs=cfg.lbfgs.model_dump())


# ---------------------------------------------------------------------------------------------------------------
# Run


def run(section: str, cfg: Params) -> None:
    from ..figures import example_grid

    t0 = time.time()
    device = train.pick_device(cfg.device)
    raw = Path("data/raw/mnist.npz")
    full, test = data.load(raw, "train"), data.load(raw, "test")
    p1, p2 = halves(len(full), cfg.split_seed)
    parts = {"P1": data.Split(full.x[p1], full.y[p1], p1), "P2": data.Split(full.x[p2], full.y[p2], p2), "all": full}
    parts = {k: data.subset(v, cfg.train_limit, cfg.seed) for k, v in parts.items()}

    nets, rows = {}, []
    for i, net in enumerate(cfg.nets):
        t = time.time()
        # each net its own seed: FC100-100-10 and FC100-100-10' must not share their initial weights
        model, _ = train_net(net, cfg, parts[net.part], test, cfg.seed + i, device)
        nets[net.name] = model
        models.save(model, OUT / "nets" / net.name)
        part = parts[net.part]
        rows.append({"net": net.name, "part": net.part, "activation": net.activation,
                     "weight_decay": net.optim(cfg.optim).weight_decay, "parameters": models.param_count(model),
                     "train_error": error_rate(model, part.x.to(device), part.y.to(device)),
                     "test_error": error_rate(model, test.x.to(device), test.y.to(device)),
                     "P1_error": error_rate(model, parts["P1"].x.to(device), parts["P1"].y.to(device)),
                     "P2_error": error_rate(model, parts["P2"].x.to(device), parts["P2"].y.to(device)),
                     "train_seconds": time.time() - t})
        log.info(f"{net.name}: train error {rows[-1]['train_error']:.4f}, test error {rows[-1]['test_error']:.4f}")

    x, y = test.x[:cfg.lbfgs.n].to(device), test.y[:cfg.lbfgs.n].to(device)
    target = data.other_labels(y, cfg.seed)
    lb, fg, pg = {}, {}, {}
    for name in dict.fromkeys(cfg.table1 + cfg.table3):
        model, t = nets[name], time.time()
        res = lb[name] = lbfgs_all(model, x, target, cfg.lbfgs)
        row = next(r for r in rows if r["net"] == name)
        row |= {"lbfgs_success": res.success.float().mean().item(),
                "mean_distortion": res.distortion[res.success].mean().item() if res.success.any() else float("nan"),
                "lbfgs_seconds": time.time() - t}
        fg[name] = attacks.fgsm(model, x, y, cfg.fgsm_eps).x
        pg[name] = attacks.pgd(model, x, y, attacks.Linf(cfg.fgsm_eps), cfg.pgd_steps,
                               2.5 * cfg.fgsm_eps / cfg.pgd_steps).x
        log.info(f"{name}: L-BFGS reached the target on {100 * row['lbfgs_success']:.1f}%, mean distortion "
                 f"{row['mean_distortion']:.4f} ({row['lbfgs_seconds']:.0f}s)")

    # Tables 2 and 4: only successful L-BFGS examples count as adversarial; failures keep the clean image.
    def transfer(names: list[str], amplified: bool, noise: dict) -> pd.DataFrame:
        inputs = {f"L-BFGS for {n}": lb[n].x for n in names}
        if amplified:
            inputs |= {f"L-BFGS for {n}, amplified to {cfg.amplify_to:g}": amplify(x, lb[n].x, cfg.amplify_to)
                       for n in names}
        inputs |= {f"Gaussian noise, stddev {s:.3g}": gaussian(x, s, cfg.seed + 1 + k) for k, s in
                   enumerate(noise)}
        inputs["clean test images"] = x
        return error_matrix({n: nets[n] for n in names}, inputs, y)

    d3 = [lb[n].distortion[lb[n].success].mean().item() for n in cfg.table3]
    table2 = transfer(cfg.table1, False, cfg.noise_std)
    table4 = transfer(cfg.table3, True, [float(np.mean(d3)), *[s for s in cfg.noise_std if s <= cfg.amplify_to]])
    grad_inputs = {f"FGSM eps {cfg.fgsm_eps:g} for {n}": v for n, v in fg.items()}
    grad_inputs |= {f"PGD-{cfg.pgd_steps} eps {cfg.fgsm_eps:g} for {n}": v for n, v in pg.items()}
    grad_table = error_matrix({n: nets[n] for n in lb}, grad_inputs, y)

    # Section 3: units
    src = models.load(cfg.units.source, device)
    study = unit_study(src, test, cfg.units, cfg.seed)
    units = {k: study[k]["purity"] for k in ("natural", "random")}
    _unit_figure(test, study, "reports/figures/szegedy_units.png")

    # Section 4.2: the pool of adversarial examples as a regulariser
    reg = None
    if cfg.regulariser is not None:
        r = cfg.regulariser
        base = next(n for n in cfg.nets if n.name == r.base)
        pool = {"x": None, "y": None}
        t = time.time()
        model, hist = train_net(base, cfg, parts[base.part], test, cfg.seed + cfg.nets.index(base), device,
                                objective=pool_objective(pool, r.mix),
                                on_epoch=pool_refresher(pool, parts[base.part], r, cfg.seed), checkpoint=False)
        models.save(model, OUT / "nets" / f"{base.name}+adversarial pool")
        reg = {"net": f"{base.name} + adversarial pool", "test_error": error_rate(model, test.x, test.y),
               "train_error": error_rate(model, parts[base.part].x, parts[base.part].y),
               "base_test_error": next(rw["test_error"] for rw in rows if rw["net"] == base.name),
               "pool_success": hist[-1]["pool_success"], "pool_distortion": hist[-1]["pool_distortion"],
               "seconds": time.time() - t}
        log.info(f"{reg['net']}: test error {reg['test_error']:.4f} (weight decay alone "
                 f"{reg['base_test_error']:.4f}; {reg['seconds']:.0f}s)")

    # Section 4.3: spectral bounds
    spec_rows = []
    for name, model in [*[(n, nets[n]) for n in cfg.table1], ("train_mnist CNN", src)]:
        for k, r_ in enumerate(spectral(model.cpu(), (1, 28, 28), cfg.power_iterations, cfg.seed)):
            spec_rows.append({"net": name, "index": k, **r_})
        model.to(device)
    spec = pd.DataFrame(spec_rows)

    first = cfg.table3[0]
    example_grid(x[:8], lb[first].x[:8], y[:8], target[:8], nets[first], "reports/figures/szegedy_examples.png",
                 f"Minimal L-BFGS examples for {first}")
    metrics = summarise(cfg, rows, table2, table4, units, reg, spec)
    store.publish("szegedy", cfg, t0, str(device), metrics=metrics, out=OUT,
                  tables={"szegedy_nets": pd.DataFrame(rows), "szegedy_table2": table2.reset_index(names="inputs"),
                          "szegedy_transfer": table4.reset_index(names="inputs"),
                          "szegedy_transfer_grad": grad_table.reset_index(names="inputs"),
                          "szegedy_units": pd.DataFrame([{"basis": k, "direction": i, "purity": v}
                                                         for k, vs in units.items() for i, v in enumerate(vs)]),
                          "szegedy_spectral": spec},
                  split_seed=cfg.split_seed, P1_sha256=data.sha256(p1.numpy()), P2_sha256=data.sha256(p2.numpy()),
                  regulariser=reg)


def summarise(cfg, rows, table2, table4, units, reg, spec) -> dict:
    n_lb = cfg.lbfgs.n
    metrics = {"nets": {r["net"]: {"n": 10000, **{k: round(v, 5) for k, v in r.items() if k in
                                                  ("train_error", "test_error", "mean_distortion",
                                                   "lbfgs_success")}} for r in rows}}
    for key, t in (("table2", table2), ("table4", table4)):
        metrics[key] = {"n": n_lb, **{f"{row} -> {col}": round(t.loc[row, col], 4) for row in t.index
                                      for col in t.columns}}
    nat, rnd = stats.mean_ci(units["natural"]), stats.mean_ci(units["random"])
    diff = stats.welch(units["natural"], units["random"])  # random minus natural
    metrics["units"] = {"n": cfg.units.top, "natural_purity": nat.mean, "random_purity": rnd.mean,
                        "random_minus_natural": diff.mean, "random_minus_natural_ci95": diff.half,
                        "directions": len(units["natural"])}
    if reg is not None:
        metrics["regulariser"] = {"n": 10000, "test_error": reg["test_error"],
                                  "weight_decay_test_error": reg["base_test_error"]}
    metrics["spectral"] = {net: float(np.prod(g["bound"])) for net, g in spec.groupby("net", sort=False)}
    return metrics


def _unit_figure(test: data.Split, study: dict, path: str, show: int = 4) -> None:
    import matplotlib.pyplot as plt

    from ..store import atomic
    top = study["natural"]["top"].shape[1]
    fig, axes = plt.subplots(2 * show, top, figsize=(0.9 * top + 1.6, 0.95 * 2 * show), squeeze=False)
    for b, basis in enumerate(("natural", "random")):
        for r in range(show):
            ax_row = axes[b * show + r]
            idx = study[basis]["top"][r]
            for c, i in enumerate(idx.tolist()):
                ax_row[c].imshow(test.x[i, 0], cmap="gray", vmin=0, vmax=1)
                ax_row[c].set_xticks([])
                ax_row[c].set_yticks([])
                ax_row[c].set_title(str(int(test.y[i])), fontsize=7, pad=1)
            label = (f"unit {int(study['units'][r])}" if basis == "natural" else f"random v{r + 1}")
            ax_row[0].set_ylabel(f"{label}\npurity {study[basis]['purity'][r]:.2f}", fontsize=7, rotation=0,
                                 ha="right", va="center")
    fig.suptitle("Test images maximising <phi(x), e_i> (top 4 rows: natural basis) and <phi(x), v> (bottom 4: "
                 "random directions); titles: their labels", fontsize=9)
    fig.tight_layout()
    with atomic(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# Report


def _cells(t: pd.DataFrame, paper: dict, rename: dict | None = None) -> list[dict]:
    """Rows of a transfer table as 'ours / paper' cells (paper from anchors: columns and rows)."""
    from ..render import pct
    rename = rename or {}
    cols = list(t.columns)
    out = []
    for row in t.index:
        key = rename.get(row, row.removeprefix("L-BFGS for "))
        ref = paper["rows"].get(key)
        cells = {}
        for c in cols:
            p = ref[paper["columns"].index(c)] if ref is not None and c in paper["columns"] else None
            cells[c] = f"{pct(t.loc[row, c])} / {pct(p)}" if p is not None else pct(t.loc[row, c])
        out.append({"inputs (made for)": row, **cells})
    return out


def section(ctx: Context) -> str:
    import matplotlib.pyplot as plt

    from ..render import ci, pct, table
    title = f"## {TITLE}\n\n"
    nets, t2, t4 = ctx.table("szegedy_nets"), ctx.table("szegedy_table2"), ctx.table("szegedy_transfer")
    grad, spec, m = ctx.table("szegedy_transfer_grad"), ctx.table("szegedy_spectral"), ctx.metrics("szegedy")
    run_ = ctx.runs().get("szegedy")
    if nets is None or t2 is None or t4 is None or m is None or run_ is None:
        return title + "Not run yet.\n"
    p = run_["params"]
    a = ctx.anchors["szegedy"]
    lb = p["lbfgs"]
    nets = nets.set_index("net")
    rows = []
    for name in p["table1"]:
        r, ref = nets.loc[name], a["table1"].get(name, {})
        lo, hi = stats.binomial_ci(round(r.test_error * 10000), 10000)
        rows.append({"net": name, "paper's description": ref.get("description", "–"),
                     "ours": f"{r.activation}, weight decay {r.weight_decay:g}",
                     "train error (ours / paper)": f"{pct(r.train_error, 2)} / {pct(ref.get('train_error'), 2)}",
                     "test error (ours, 95% CI / paper)": f"{pct(r.test_error, 2)} ({100 * lo:.2f}-{100 * hi:.2f}) / "
                                                         f"{pct(ref.get('test_error'), 2)}",
                     "mean min. distortion (ours / paper)": f"{r.mean_distortion:.3f} / "
                                                            f"{ref.get('mean_distortion', float('nan')):.3f}",
                     "L-BFGS reached target": pct(r.lbfgs_success)})
    t2 = t2.set_index("inputs")
    t2.index = [i.replace("stddev 0.1", "stddev 0.1") for i in t2.index]
    rows3 = []
    for name in p["table3"]:
        r, ref = nets.loc[name], a["table3"].get(name, {})
        rows3.append({"net": name, "error on P1 (ours / paper)": f"{pct(r.P1_error, 2)} / {pct(ref.get('P1_error'), 1)}",
                      "on P2": f"{pct(r.P2_error, 2)} / {pct(ref.get('P2_error'), 1)}",
                      "on test": f"{pct(r.test_error, 2)} / {pct(ref.get('test_error'), 1)}",
                      "min. av. distortion": f"{r.mean_distortion:.3f} / {ref.get('mean_distortion', float('nan')):.3f}"})
    t4 = t4.set_index("inputs")
    amp = {i: "amplified " + i.removeprefix("L-BFGS for ").split(",")[0] for i in t4.index if ", amplified" in i}
    noise_name = {i: f"Gaussian noise, stddev {float(i.split()[-1]):.2g}" for i in t4.index if i.startswith("Gaussian")}

    # figure: Table 4 heat map
    fig, ax = plt.subplots(figsize=(1.5 * len(t4.columns) + 4.5, 0.42 * len(t4) + 1.3))
    im = ax.imshow(100 * t4.values, cmap="magma_r", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(t4.columns)), t4.columns, rotation=15, ha="right", fontsize=8)
    ax.set_yticks(range(len(t4)), t4.index, fontsize=8)
    for i in range(len(t4)):
        for j in range(len(t4.columns)):
            v = 100 * t4.values[i, j]
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="white" if v > 55 else "black")
    ax.set_title("Error rate (%) of each net (columns) on inputs made for a net (rows)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, label="error rate (%)")
    img = ctx.figure(fig, "szegedy_transfer")

    u = m["units"]
    verdict_u = units_claim(m).verdict
    reg = m.get("regulariser")
    reg_text = ""
    if reg:
        lo, hi = stats.binomial_ci(round(reg["test_error"] * 10000), 10000)
        lo0, hi0 = stats.binomial_ci(round(reg["weight_decay_test_error"] * 10000), 10000)
        better = hi < lo0
        reg_text = (
            f"**Adversarial examples as a regulariser (Section 4.2).** `{run_['regulariser']['net']}`: test error "
            f"{pct(reg['test_error'], 2)} (95% CI {100 * lo:.2f}-{100 * hi:.2f}) against "
            f"{pct(reg['weight_decay_test_error'], 2)} ({100 * lo0:.2f}-{100 * hi0:.2f}) with weight decay alone, same "
            f"recipe; the paper: below {pct(a['regulariser']['adversarial_pool'], 1)} against "
            f"{pct(a['regulariser']['weight_decay'], 1)} (dropout {pct(a['regulariser']['dropout'], 1)}). "
            + ("The pool lowers the test error beyond both intervals: the direction reproduces." if better else
               "The two intervals overlap: no gain is resolved at this scale.")
            + f" The pool holds {p['regulariser']['pool']:,} L-BFGS examples of training images ("
            f"{100 * p['regulariser']['refresh']:.0f}% replaced after every epoch, {100 * p['regulariser']['mix']:.0f}% "
            f"of each batch); the paper also made examples for every layer's output, which we do not.\n\n")
    spec_text = ""
    if spec is not None:
        srows = [{"net": net, "layers": " · ".join(f"{r.layer} {r.bound:.3g}" for r in g.itertuples()),
                  "product (upper bound on the net's Lipschitz constant)": f"{np.prod(g['bound']):.3g}"}
                 for net, g in spec.groupby("net", sort=False)]
        arow = [{"layer": r["layer"], "size": r["size"], "stride": r["stride"] or "–", "upper bound": r["bound"]}
                for r in a["alexnet_bounds"]]
        spec_text = (
            "**Spectral bounds (Section 4.3)**: an upper bound on each layer's Lipschitz constant in L2 (the largest "
            "singular value of a dense layer; of a convolution by power iteration on the layer as an operator; "
            "1/4 for a sigmoid, 1 for ReLU and non-overlapping max-pooling; 1/std for the input normalisation), "
            f"and their product:\n\n{table(srows)}\n\nThe paper's AlexNet table, for the shape of the result "
            f"(large bounds, so instability is possible, not proven):\n\n{table(arow)}\n\n")
    gtab = ""
    if grad is not None:
        g = grad.set_index("inputs")
        gtab = ("The same transfer for gradient-sign examples (untargeted, L-inf eps "
                f"{p['fgsm_eps']:g}):\n\n" + table([{"inputs": i, **{c: pct(v) for c, v in r.items()}}
                                                   for i, r in g.iterrows()]) + "\n\n")
    return (
        title +
        f"Minimal-distortion examples by box-constrained L-BFGS towards a random other label, on the first "
        f"{lb['n']:,} test images ({lb['search_steps']} rounds of search over c, squared-L2 penalty). Distortion "
        "is sqrt(mean(r^2)) with pixels in [0, 1]. Error rates on the full test set carry a 95% Wilson interval "
        "(n = 10,000).\n\n"
        f"**Units (Section 3).** The claim: {a['units_claim']}. In the last hidden layer of `{p['units']['source']}` "
        f"({a['units_net']} in the paper), the {p['units']['top']} test images with the largest <phi(x), e_i> for "
        f"{u['directions']} units e_i, and with the largest <phi(x), v> for as many random unit directions v: they "
        f"share one class {pct(u['natural_purity'])} of the time for units and {pct(u['random_purity'])} for random "
        f"directions (random minus natural {ci(u['random_minus_natural'], u['random_minus_natural_ci95'], signed=True)}"
        f", Welch interval over directions): **{verdict_u}** (random directions look as semantic as units when "
        "the interval does not lie below zero).\n\n![units](figures/szegedy_units.png)\n\n"
        f"**Table 1** (trained on all 60,000 images):\n\n{table(rows)}\n\n"
        f"**Table 2**, cross-model generalisation (error of the column net on examples made for the row net; "
        f"ours / paper):\n\n{table(_cells(t2, a['table2']))}\n\n"
        f"**Tables 3 and 4**, cross-training-set generalisation (halves P1 / P2, split seed {p['split_seed']}):\n\n"
        f"{table(rows3)}\n\n{table(_cells(t4, a['table4'], amp | noise_name))}\n\n![Table 4]({img})\n\n{gtab}"
        f"{reading(nets, t4, p, a)}\n\n{reg_text}{spec_text}"
        "![Minimal L-BFGS examples](figures/szegedy_examples.png)\n"
    )


def reading(nets: pd.DataFrame, t4: pd.DataFrame, p: dict, a: dict) -> str:
    """What Table 4 shows (computed), and the settings that differ from the paper."""
    from ..render import pct
    first, twin, half = (p["table3"] + [None, None])[:3]
    lines = ["**Reading.**"]
    row = f"L-BFGS for {first}"
    noise = [r for r in t4.index if r.startswith("Gaussian noise")]
    if row in t4.index and twin in t4.columns and half in t4.columns:
        x, z = t4.loc[row, twin], t4.loc[row, half]
        nmax = t4.loc[noise, [twin, half]].values.max() if noise else float("nan")
        lines.append(f"Examples made for {first} fool {twin} (same half) {pct(x)} of the time (paper "
                     f"{pct(a['table4']['rows'][first][1])}) and {half} (other half) {pct(z)} (paper "
                     f"{pct(a['table4']['rows'][first][2])}): transfer across training sets is "
                     f"{'weaker than' if z < x else 'not weaker than'} across architectures, as in the paper, and both "
                     f"lie {'far above' if min(x, z) > 2 * nmax else 'near'} Gaussian noise of the same size "
                     f"({pct(nmax)} at most).")
    d = nets.loc[p["table1"], "mean_distortion"]
    lines.append(
        f"Settings that differ from the paper: our nets are trained with {p['optim']['name'].upper()} for "
        f"{p['train']['epochs']} epochs (the paper: L-BFGS to convergence, per-layer weight decay lambda / units); "
        "the L-BFGS penalty is on the squared L2 norm and its target a random other label (the paper does not say "
        "how targets were chosen); distortion is averaged over the attacked test images (the paper's Table 1 is "
        f"over the training set). Our distortions ({d.min():.3f}-{d.max():.3f}) against the paper's 0.058-0.14.")
    return " ".join(lines)


TITLE = "Szegedy et al. 2014: intriguing properties of neural networks (MNIST)"
PAPER, SECTION = "Szegedy et al. 2014", "## " + TITLE  # the scoreboard's paper name and the section it links to


def units_claim(m: dict):
    """Section 3's claim, one rule for the section and the scoreboard: the natural basis is no better than a
    random one, i.e. random minus natural purity is not below zero (refuted only by an interval wholly below it; a
    random basis that comes out ahead meets the claim too)."""
    from ..render import Claim
    u = m["units"]
    d, h = u["random_minus_natural"], u["random_minus_natural_ci95"]
    return Claim(PAPER, "random directions look as semantic as units (purity, random minus natural)", 0.0, d, d - h,
                 d + h, f"{u['directions']} directions each", None, SECTION, signed=True, bound="not below")


def claims(ctx: Context) -> list:
    from ..render import Claim, diff_interval, wilson
    m, run_ = ctx.metrics("szegedy"), ctx.runs().get("szegedy")
    paper, sec = PAPER, SECTION
    if m is None or run_ is None:
        return [Claim(paper, "examples transfer across models and training sets", 0.262, None, section=sec)]
    a, p = ctx.anchors["szegedy"], run_["params"]
    t4, n = m["table4"], m["table4"]["n"]
    first, twin, half = p["table3"][:3]
    noise = next((k for k in t4 if k.startswith("Gaussian noise") and k.endswith(f"-> {twin}")), None)
    noise_half = next((k for k in t4 if k.startswith("Gaussian noise") and k.endswith(f"-> {half}")), None)
    out = []
    for col, ref, what, null in ((twin, a["table4"]["rows"][first][1], "transfer to another architecture", noise),
                                 (half, a["table4"]["rows"][first][2], "transfer across training sets", noise_half)):
        v = t4.get(f"L-BFGS for {first} -> {col}")
        lo, hi = wilson(v, n)
        out.append(Claim(paper, f"L-BFGS examples {what} ({first} -> {col})", ref, v, lo, hi, f"n={n:,}",
                         t4.get(null) if null else None, sec))
    amp = next((k for k in t4 if k.startswith(f"L-BFGS for {first}, amplified") and k.endswith(f"-> {half}")), None)
    if amp:
        lo, hi = wilson(t4[amp], n)
        out.append(Claim(paper, f"amplified to {p['amplify_to']:g}, across training sets", a["table4"]["rows"][
            f"amplified {first}"][2], t4[amp], lo, hi, f"n={n:,}", t4.get(noise_half), sec))
    nets = m["nets"]
    for name in ("FC100-100-10", "FC10(1e-4)"):
        if name in nets:
            v = nets[name]["test_error"]
            lo, hi = wilson(v, 10000)
            out.append(Claim(paper, f"{name} test error", a["table1"][name]["test_error"], v, lo, hi, "n=10,000",
                             None, sec))
    out.append(units_claim(m))
    reg = m.get("regulariser")
    if reg:
        r = a["regulariser"]
        lo, hi = diff_interval(reg["weight_decay_test_error"], reg["test_error"], 10000, 10000)
        out.append(Claim(paper, "a pool of adversarial examples lowers test error (minus weight decay alone)",
                         r["adversarial_pool"] - r["weight_decay"], reg["test_error"] - reg["weight_decay_test_error"],
                         lo, hi, "n=10,000 each", 0.0, sec, signed=True))
    return out
