"""The attack loop: projected gradient ascent over a pluggable threat model, with FGSM as its one-step case.

`pgd` is the single loop every gradient attack in the project runs through: FGSM (Goodfellow et al.) is one
unprojected signed step, PGD (Madry et al.) many projected steps from a random start, L2 PGD normalised gradient
steps (Ilyas et al.). Adaptive attacks plug in a gradient oracle (see `adaptive`). Every attack runs the model in
eval mode and puts it back the way it found it. Inputs are pixels in [0, 1].
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .threats import Linf, Threat

# A gradient oracle: (x_adv, labels) -> (d objective / d x_adv, logits at x_adv). The objective is to be ascended.
GradFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# ---------------------------------------------------------------------------------------------------------------
# Losses (all returned per example, to be ascended by the attacker)


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z_label - max_{j != label} z_j: positive when `labels` wins."""
    z = logits.float()
    own = z.gather(1, labels[:, None]).squeeze(1)
    other = z.masked_fill(F.one_hot(labels, z.shape[1]).bool(), float("-inf")).amax(1)
    return own - other


def objective(logits: torch.Tensor, labels: torch.Tensor, loss: str, targeted: bool) -> torch.Tensor:
    """What the attacker ascends. Untargeted: move away from the true label; targeted: towards the target."""
    if loss == "ce":
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        return -ce if targeted else ce
    if loss == "margin":  # Carlini & Wagner's margin loss, without the confidence clip
        m = margin(logits, labels)
        return m if targeted else -m
    raise ValueError(f"unknown loss '{loss}', expected 'ce' or 'margin'")


def succeeded(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    pred = logits.argmax(1)
    return pred == labels if targeted else pred != labels


# ---------------------------------------------------------------------------------------------------------------
# The loop


def couples_batch(model: nn.Module) -> bool:
    """Whether the model's output for an example depends on its batch partners (a module says so, and no wrapper
    around it holds its partners fixed: `Anchored`)."""
    if getattr(model, "anchored", False):
        return False
    return any(getattr(m, "couples_batch", False) for m in model.modules())


def coupled_through_first(model: nn.Module) -> bool:
    """Whether the model couples its batch, and only through the batch's first example (`couples_batch = "first"`,
    the blog's k-WTA: that example's threshold masks the batch)."""
    return couples_batch(model) and all(getattr(m, "couples_batch", False) in (False, "first")
                                        for m in model.modules())


class Anchored(nn.Module):
    """A model coupled through its batch's first example, with that example (`anchor`) fixed in front of every
    call. Given it, each other example's output is a function of itself alone: an attack may then run, stop early
    and restart on any sub-batch and still meet exactly the function the whole batch is scored as."""

    anchored = True

    def __init__(self, model: nn.Module, anchor: torch.Tensor):
        super().__init__()
        self.model, self.anchor = model, anchor.detach()

    def forward(self, x):
        return self.model(torch.cat([self.anchor.to(x.dtype), x]))[1:]


def by_anchor(attack: Callable, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *args,
              target: Optional[torch.Tensor] = None, judge: Optional[nn.Module] = None, **kw):
    """`attack` on a batch of a model coupled through its first example, as the batch is scored: the first example
    alone (a batch of one is its own anchor), then the rest behind that example's result. `attack` returns a
    Result or the adversarial batch itself (AutoAttack); the two parts are joined the same way."""
    def part(rows: slice, anchor: Optional[torch.Tensor]):
        hold = (lambda m: m if anchor is None or m is None or not couples_batch(m) else Anchored(m, anchor))
        extra = ({} if target is None else {"target": target[rows]}) | ({} if judge is None else {"judge": hold(judge)})
        return attack(hold(model), x[rows], y[rows], *args, **extra, **kw)
    first = part(slice(0, 1), None)
    if isinstance(first, torch.Tensor):
        return torch.cat([first, part(slice(1, None), first)])
    return Result.cat([first, part(slice(1, None), first.x)])


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode (BatchNorm uses running statistics) with frozen parameters, and restore both after.

    Freezing guarantees that no attack, nor a gradient oracle that calls backward(), leaves gradients in the
    model's .grad fields (which an optimizer stepping after the attack would apply). It does not make the attack
    faster: torch.autograd.grad already skips weight gradients it was not asked for.
    """
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in grads:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)


@contextlib.contextmanager
def fast_layout(model: nn.Module, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """Run a conv net on image batches in channels-last layout (oneDNN and tensor-core kernels are faster in it:
    ~1.3x per attack step on a 2-core CPU) and restore the model's own tensors after. Values are unchanged."""
    if x.ndim != 4 or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        yield x
        return
    # each tensor is put back as it was: a guess from one weight's strides cannot tell the layouts apart where a
    # dimension is 1 (a one-channel MNIST conv's weight is "contiguous" in both), and would leave the net converted
    params = [(p, p.data) for p in model.parameters()]
    buffers = [(m, name, b) for m in model.modules() for name, b in m.named_buffers(recurse=False)]
    model.to(memory_format=torch.channels_last)
    try:
        yield x.contiguous(memory_format=torch.channels_last)
    finally:
        for p, data in params:
            p.data = data
        for m, name, b in buffers:
            setattr(m, name, b)


def autograd_oracle(model: nn.Module, loss: str, targeted: bool) -> GradFn:
    def grad(x_adv, labels):
        x_adv = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x_adv)
            g, = torch.autograd.grad(objective(logits, labels, loss, targeted).sum(), x_adv)
        return g, logits.detach()
    return grad


@dataclass
class Result:
    """Adversarial examples with, per example, whether the attack succeeded and the distortion it used."""

    x: torch.Tensor
    success: torch.Tensor  # bool [N]: misclassified (untargeted) or classified as the target (targeted)
    distortion: torch.Tensor  # [N] norm of x_adv - x in the threat's norm
    logits: torch.Tensor  # [N, C] at x_adv

    @classmethod
    def cat(cls, parts: list["Result"]) -> "Result":
        """Join the results of consecutive batches."""
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in ("x", "success", "distortion", "logits")))


class _Best:
    """Per example, the strongest point seen so far: a success before a failure, then the higher objective."""

    def __init__(self, x: torch.Tensor):
        self.x, self.ok = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.obj = torch.full((len(x),), float("-inf"), device=x.device)
        self.logits: Optional[torch.Tensor] = None

    def update(self, rows: torch.Tensor, xa: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, loss: str,
               targeted: bool) -> None:
        ok = succeeded(logits, labels, targeted)
        obj = objective(logits, labels, loss, targeted).detach()
        better = (ok & ~self.ok[rows]) | ((ok == self.ok[rows]) & (obj > self.obj[rows]))
        r = rows[better]
        self.x[r], self.ok[r], self.obj[r] = xa[better].detach(), ok[better], obj[better]
        if self.logits is None:
            self.logits = torch.zeros(len(self.x), logits.shape[1], device=logits.device)
        self.logits[r] = logits[better].detach().float()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Threat, steps: int, step_size: float, *,
        target: Optional[torch.Tensor] = None, restarts: int = 1, random_start: bool = True, loss: str = "ce",
        early_stop: bool = False, grad: Optional[GradFn] = None, best: bool = False,
        judge: Optional[nn.Module] = None) -> Result:
    """Projected gradient ascent on `objective` inside `threat`'s ball: the one attack loop.

    target: None for an untargeted attack (leave the label y), else the labels to reach.
    restarts: independent runs (from fresh random starts); per example the strongest result is kept, a success
      before a failure, then the higher objective. Restarts after the first attack only the examples not yet broken.
    early_stop: an example that succeeds is frozen there (cheaper; the perturbation stays small). Off, every
      example takes all `steps` steps (as Ilyas et al. do when building their datasets).
    grad: a gradient oracle (BPDA, EOT and gradient-free estimates plug in here); default: autograd on `model`.
    best: return each example's strongest iterate over all steps (MadryLab's `use_best`), not the last one.
    judge: the model whose outputs decide success, the best iterate and early stopping, when it is not the model
      the gradients come from (a transfer attack: gradients of a surrogate, success on the target).

    A model whose output for one example depends on the rest of its batch (a module with `couples_batch`) is
    attacked in the batch as it is scored. Coupled through the first example only (the blog's k-WTA), the first
    example is attacked alone and the rest behind its result (`by_anchor`), each then a function of itself alone.
    Coupled otherwise (or with a gradient oracle, which is bound to the model): every step on the whole batch, the
    final iterate, and of the restarts the one that leaves the fewest examples correct. Early stopping, best
    iterates and restarts on the unbroken examples would each run or judge it in another batch, a function it is
    never scored as.
    """
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
    through_first = [m for m in (model, judge) if m is not None and couples_batch(m)]
    if len(x) > 1 and grad is None and through_first and all(coupled_through_first(m) for m in through_first):
        return by_anchor(pgd, model, x, y, threat, steps, step_size, target=target, judge=judge, restarts=restarts,
                         random_start=random_start, loss=loss, early_stop=early_stop, best=best)
    targeted = target is not None
    labels = (target if targeted else y).to(x.device)
    coupled = len(x) > 1 and (couples_batch(model) or (judge is not None and couples_batch(judge)))
    if coupled:
        early_stop, best = False, False
    judged = contextlib.nullcontext() if judge is None else eval_mode(judge)
    with eval_mode(model), judged, fast_layout(model, x.detach()) as x:
        oracle = grad or autograd_oracle(model, loss, targeted)
        final = model if judge is None else judge

        def judge_at(xa):
            if judge is None:
                return None
            with torch.no_grad():
                return judge(xa)

        out = _Best(x)
        todo = torch.arange(len(x), device=x.device)
        for _ in range(restarts):
            xs, ls = x[todo], labels[todo]
            xa = threat.random_start(xs) if random_start else xs.clone()
            project = threat.projector(xs)
            run = _Best(xs) if best else None
            live = None  # None: every row is still updated (no indexing cost); else the rows still updated
            for _ in range(steps):
                rows = torch.arange(len(xs), device=x.device) if live is None else live
                g, logits = oracle(xa, ls) if live is None else oracle(xa[live], ls[live])
                seen = judge_at(xa if live is None else xa[live])
                logits = logits if seen is None else seen
                if run is not None:
                    run.update(rows, xa if live is None else xa[live], logits, ls[rows], loss, targeted)
                if early_stop:
                    keep = ~succeeded(logits, ls[rows], targeted)
                    live, g = rows[keep], g[keep]
                if live is None:
                    step = threat.ascent(g)  # a fresh tensor: the update and the clamp write into it
                    xa = project(torch.add(xa, step, alpha=step_size, out=step), out=step)
                elif len(live):
                    xa[live] = threat.project(xa[live] + step_size * threat.ascent(g), xs[live])
                else:
                    break
            with torch.no_grad():
                logits = final(xa)
            if run is not None:
                run.update(torch.arange(len(xs), device=x.device), xa, logits, ls, loss, targeted)
                xa, logits = run.x, run.logits
            if coupled:  # the batch is the unit: keep the restart that breaks the most of it
                ok = succeeded(logits, ls, targeted)
                if out.logits is None or ok.sum() > out.ok.sum():
                    out.x, out.ok, out.logits = xa.detach().clone(), ok, logits.detach().float()
                if out.ok.all():
                    break
                continue
            out.update(todo, xa, logits, ls, loss, targeted)
            todo = todo[~out.ok[todo]]
            if len(todo) == 0:
                break
    return Result(out.x, out.ok, threat.norm(out.x - x), out.logits)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, target: Optional[torch.Tensor] = None,
         loss: str = "ce") -> Result:
    """Goodfellow et al.: x + eps * sign(grad_x J(x, y)); targeted: x - eps * sign(grad_x J(x, t))."""
    return pgd(model, x, y, Linf(eps), steps=1, step_size=eps, target=target, random_start=False, loss=loss)


def batched(attack: Callable[..., Result], model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
            target: Optional[torch.Tensor] = None, **kw) -> Result:
    """Run `attack` over `x` in batches (memory), concatenating the results."""
    parts = []
    for i in range(0, len(x), batch_size):
        t = None if target is None else target[i:i + batch_size]
        parts.append(attack(model, x[i:i + batch_size], y[i:i + batch_size], target=t, **kw))
    return Result.cat(parts)
