"""Reference checks of the attacks: closed forms, constraint properties, an independent implementation."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from advrep import attacks as A
from advrep import data, models, train
from advrep.config import OptimConfig, TrainConfig


@pytest.fixture(scope="module")
def mnist_small(mirror):
    """A small MLP trained for a few seconds on 10k MNIST images, and 1,000 test images it is attacked on."""
    arrays = data.fetch("mnist", mirror)
    x = lambda a: torch.from_numpy(a).float().div(255).unsqueeze(1)  # noqa: E731
    tr = data.Split(x(arrays["x_train"][:10000]), torch.from_numpy(arrays["y_train"][:10000]).long(),
                    torch.arange(10000))
    te = data.Split(x(arrays["x_test"][:1000]), torch.from_numpy(arrays["y_test"][:1000]).long(), torch.arange(1000))
    torch.manual_seed(0)
    model = models.build({"arch": "mlp", "dataset": "mnist", "widths": [128]})
    train.fit(model, tr, te, TrainConfig(epochs=3, batch_size=64), OptimConfig(lr=0.1, schedule="onecycle",
              warmup=0.2), 0, torch.device("cpu"))
    return model.eval(), te


def linear_model(seed=0):
    torch.manual_seed(seed)
    return models.build({"arch": "mlp", "dataset": "mnist", "widths": []}).eval()


# ---------------------------------------------------------------------------------------------------------------
# Closed forms


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_on_a_linear_model_equals_its_closed_form(targeted):
    model = linear_model()
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    t = (y + 1) % 10 if targeted else None
    eps = 0.1
    # closed form: z = W (x - m)/s + b, dCE/dz = softmax(z) - onehot(label), dCE/dx = W^T (p - onehot) / s
    lin = model.body[1]
    std = model.norm.std.item()
    z = model(x)
    label = t if targeted else y
    g = ((F.softmax(z, 1) - F.one_hot(label, 10)) @ lin.weight / std).view_as(x)
    expected = (x + (-1 if targeted else 1) * eps * g.sign()).clamp(0, 1)
    got = A.fgsm(model, x, y, eps, target=t).x
    assert torch.equal(got, expected)


def test_linf_projection_is_exact_and_l2_random_start_fills_the_ball():
    x = torch.full((2000, 1, 4, 4), 0.5)
    th = A.L2(0.3)
    r = th.norm(th.random_start(x) - x)
    assert r.max() <= 0.3 + 1e-6
    # uniform in a 16-d ball: P(|r| <= eps/2) = 2^-16; the mean radius is eps * 16/17
    assert (r < 0.15).float().mean() < 0.01 and abs(r.mean().item() - 0.3 * 16 / 17) < 0.01
    z = torch.rand(10, 3, 8, 8)
    far = z + torch.randn_like(z)
    p = A.Linf(0.05).project(far, z)
    assert torch.equal(p, torch.maximum(torch.minimum(far, z + 0.05), z - 0.05).clamp(0, 1))


# ---------------------------------------------------------------------------------------------------------------
# Properties: every returned example is inside the ball and the box


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


@settings(max_examples=40, deadline=None)
@given(norm=st.sampled_from(["linf", "l2"]), eps=st.floats(0.0, 3.0), steps=st.integers(1, 6),
       start=st.booleans(), targeted=st.booleans(), restarts=st.integers(1, 3), loss=st.sampled_from(["ce", "margin"]),
       early=st.booleans(), seed=st.integers(0, 10_000))
def test_results_stay_in_ball_and_box(norm, eps, steps, start, targeted, restarts, loss, early, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(8, 3, 4, 4, generator=g)
    x[0] = 0.0  # corners of the box
    x[1] = 1.0
    y = torch.randint(0, 10, (8,), generator=g)
    th = A.threat(norm, eps)
    res = A.pgd(Tiny(), x, y, th, steps, 2.5 * eps / steps + 1e-3, target=(y + 3) % 10 if targeted else None,
                restarts=restarts, random_start=start, loss=loss, early_stop=early)
    assert res.x.min() >= 0 and res.x.max() <= 1
    assert (th.norm(res.x - x) <= eps * (1 + 1e-5) + 1e-6).all()
    assert torch.equal(res.distortion, th.norm(res.x - x))


@pytest.mark.parametrize("norm,eps", [("linf", 1.0), ("l2", 30.0)])
def test_targeted_attacks_reach_every_target_when_the_budget_allows(norm, eps):
    model = linear_model(3)
    x = torch.rand(100, 1, 28, 28)
    y = model(x).argmax(1)
    t = (y + 1 + torch.randint(0, 9, (100,))) % 10
    res = A.pgd(model, x, y, A.threat(norm, eps), steps=50, step_size=eps / 10, target=t)
    assert res.success.all() and (res.logits.argmax(1) == t).all()


def test_attacks_use_eval_mode_and_restore_the_mode():
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10), nn.Dropout(0.5), Spy()).train()
    A.pgd(model, torch.rand(4, 1, 4, 4), torch.zeros(4, dtype=torch.long), A.Linf(0.1), 3, 0.05)
    assert seen and not any(seen)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("arch,dataset,shape", [("cifar_cnn", "cifar10", (3, 32, 32)),
                                                ("mnist_cnn", "mnist", (1, 28, 28))])
def test_attack_leaves_a_conv_net_as_it_found_it(arch, dataset, shape, channels_last):
    # every tensor's strides, not one weight's: a one-channel conv's weight looks contiguous in both layouts
    torch.manual_seed(0)
    model = models.build({"arch": arch, "dataset": dataset, "widths": [8, 8, 8]}).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    strides = lambda: [t.stride() for t in [*model.parameters(), *model.buffers()]]  # noqa: E731
    layout = strides()
    x = torch.rand(6, *shape)
    before = model(x)
    res = A.pgd(model, x, model(x).argmax(1), A.Linf(8 / 255), 3, 2 / 255)
    assert strides() == layout and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(model(x), before)
    assert (A.Linf(8 / 255).norm(res.x - x) <= 8 / 255 + 1e-6).all()


class _Coupled(nn.Module):
    """A batch-dependent toy: logits shifted by the mean of the batch (every example's output moves with the
    others'), recording the batch sizes it is called with."""

    couples_batch = True

    def __init__(self):
        super().__init__()
        self.lin, self.sizes = nn.Linear(4, 3), []

    def forward(self, x):
        self.sizes.append(len(x))
        z = self.lin(x)
        return z - 2 * z.mean(0, keepdim=True)


@pytest.mark.parametrize("kw", [dict(early_stop=True), dict(early_stop=True, restarts=3), dict(best=True)])
def test_a_batch_coupled_model_is_attacked_in_its_whole_batch(kw):
    """Early stopping, best iterates and restarts on the unbroken examples would run the model in sub-batches:
    a function it is never scored as. The loop keeps the batch whole, and what it reports is what scoring the
    returned batch gives."""
    torch.manual_seed(0)
    model = _Coupled()
    x = torch.rand(16, 4)
    y = model(x).argmax(1)
    model.sizes.clear()
    res = A.pgd(model, x, y, A.Linf(0.3), 10, 0.05, **kw)
    assert set(model.sizes) == {16}
    with torch.no_grad():
        assert torch.equal(res.success, model(res.x).argmax(1) != y)
    assert A.couples_batch(models.build({"arch": "mnist_cnn", "dataset": "mnist", "widths": [4, 4, 8],
                                         "activation": "kwta_batch", "gamma": 0.1}))
    assert not A.couples_batch(models.build({"arch": "mnist_cnn", "dataset": "mnist", "widths": [4, 4, 8],
                                             "activation": "kwta", "gamma": 0.1}))


class _FirstCoupled(nn.Module):
    """A toy coupled through its batch's first example only, as the blog's k-WTA is: every example's logits are
    shifted by the first example's. Records the size and first row of every call."""

    couples_batch = "first"

    def __init__(self):
        super().__init__()
        self.lin, self.firsts = nn.Sequential(nn.Flatten(), nn.Linear(16, 10)), []

    def forward(self, x):
        self.firsts.append((len(x), x[0].detach().clone()))
        z = self.lin(x)
        return z - 0.5 * z[:1]


def _first_coupled(n: int):
    """The toy, a batch of n images and its own predictions as labels, with no call recorded yet."""
    torch.manual_seed(0)
    model = _FirstCoupled()
    x = torch.rand(n, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    model.firsts.clear()
    return model, x, y


@pytest.mark.parametrize("kw", [dict(early_stop=True), dict(early_stop=True, restarts=3), dict(best=True)])
def test_a_first_coupled_model_is_attacked_behind_its_first_example(kw):
    """Coupled through the first example only (the blog's k-WTA), the loop attacks that example alone and the rest
    behind its result, with early stopping, best iterates and restarts; what it reports is what scoring the
    returned batch whole gives."""
    model, x, y = _first_coupled(16)
    res = A.pgd(model, x, y, A.Linf(0.3), 10, 0.05, **kw)
    batches = [first for size, first in model.firsts if size > 1]
    assert batches and all(torch.equal(first, res.x[0]) for first in batches)
    with torch.no_grad():
        assert torch.equal(res.success, model(res.x).argmax(1) != y)
    assert A.coupled_through_first(models.build({"arch": "mnist_cnn", "dataset": "mnist", "widths": [4, 4, 8],
                                                 "activation": "kwta_batch", "gamma": 0.1}))
    assert not A.couples_batch(A.Anchored(model, x[:1]))


def test_autoattack_attacks_a_first_coupled_model_as_it_is_scored():
    """AutoAttack runs each attack on the survivors of the last: sub-batches whose first example, and so whose
    function, differ from the scoring batch's. It attacks the first example alone, then the rest with that result in
    front; every example it reports broken is broken when the returned batch is scored whole."""
    model, x, y = _first_coupled(12)
    xa = A.autoattack(model, x, y, 0.3)
    changed = (xa != x).flatten(1).any(1)
    assert changed[1:].any()
    batches = [first for size, first in model.firsts if size > 1]  # the first example alone comes in ones
    assert batches and all(torch.equal(first, xa[0]) for first in batches)  # the rest always behind its result
    with torch.no_grad():
        broken = model(xa).argmax(1) != y
    assert broken[changed].all()
    with pytest.raises(ValueError, match="whole batch"):
        A.autoattack(_Coupled(), x.flatten(1)[:, :4], y, 0.3)


def test_bad_eps_is_refused():
    for bad in (-0.1, float("nan"), "8/255"):
        with pytest.raises(ValueError, match="eps must be a finite number"):
            A.Linf(bad)


# ---------------------------------------------------------------------------------------------------------------
# Against an independent implementation (torchattacks)


@pytest.mark.parametrize("norm,eps,steps,alpha", [("linf", 0.06, 20, 0.0075), ("l2", 1.0, 20, 0.125)])
def test_pgd_matches_torchattacks(mnist_small, norm, eps, steps, alpha):
    torchattacks = pytest.importorskip("torchattacks")
    model, te = mnist_small
    torch.manual_seed(0)
    ours = A.pgd(model, te.x, te.y, A.threat(norm, eps), steps, alpha)
    ours_acc = (ours.logits.argmax(1) == te.y).float().mean().item()
    torch.manual_seed(0)
    peer = (torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True) if norm == "linf"
            else torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=True))
    adv = peer(te.x, te.y)
    with torch.no_grad():
        peer_acc = (model(adv).argmax(1) == te.y).float().mean().item()
    assert 0.1 < peer_acc < 0.9, f"eps {eps} leaves {peer_acc:.2f}: pick an eps where the comparison means something"
    assert abs(ours_acc - peer_acc) <= 0.01, f"ours {ours_acc:.3f} vs torchattacks {peer_acc:.3f}"


def test_lbfgs_distortion_not_larger_than_pgd_l2_bisection(mnist_small):
    model, te = mnist_small
    x, y = te.x[:40], te.y[:40]
    t = (y + 1) % 10
    res = A.lbfgs(model, x, t, search_steps=10, max_iter=100)
    assert res.success.float().mean() >= 0.95
    # the smallest L2 eps at which targeted PGD reaches t, by bisection per example
    lo, hi = torch.zeros(40), torch.full((40,), 8.0)
    for _ in range(12):
        mid = (lo + hi) / 2
        ok = torch.stack([A.pgd(model, x[i:i + 1], y[i:i + 1], A.L2(mid[i].item()), 100, mid[i].item() / 20,
                                target=t[i:i + 1], random_start=False).success[0] for i in range(40)])
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    pgd_rms = hi / math.sqrt(784)  # an L2 norm as Szegedy's RMS distortion
    both = res.success
    assert (res.distortion[both] <= pgd_rms[both] * 1.02 + 1e-4).float().mean() >= 0.9
    assert res.distortion[both].mean() <= pgd_rms[both].mean()


# ---------------------------------------------------------------------------------------------------------------
# Adaptive-attack tools


def test_bpda_value_of_forward_gradient_of_surrogate():
    m = A.BPDA(nn.Identity(), nn.Identity())
    m.forward_module = type("Round", (nn.Module,), {"forward": lambda self, x: torch.round(x * 4) / 4})()
    x = torch.linspace(0, 1, 9, requires_grad=True)
    out = m(x)
    assert torch.equal(out, torch.round(x.detach() * 4) / 4)
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones(9))  # identity surrogate: gradient 1, where round() has gradient 0
    calls = []
    m.surrogate.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():  # values only (success checks, Square's queries): the surrogate is not run
        assert torch.equal(m(x), out.detach())
    assert not calls


def test_with_bpda_wraps_a_copy_and_leaves_the_model_alone():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    twin = A.with_bpda(model, lambda m: isinstance(m, nn.ReLU), lambda m: nn.Softplus(beta=10))
    assert isinstance(twin[1], A.BPDA) and isinstance(model[1], nn.ReLU)
    x = torch.randn(5, 4)
    torch.testing.assert_close(twin(x), model(x))


def test_eot_of_a_deterministic_model_is_the_model():
    model = linear_model()
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(A.EOT(model, 4)(x), model(x))


def test_gradient_free_estimate_points_along_the_true_gradient():
    model = linear_model(5)
    x = torch.rand(4, 1, 28, 28) * 0.5 + 0.25
    y = model(x).argmax(1)
    torch.manual_seed(0)
    est, _ = A.GradientFree(model, sigma=1e-3, samples=4000)(x, y)
    true, _ = A.autograd_oracle(model, "margin", False)(x, y)
    cos = F.cosine_similarity(est.flatten(1), true.flatten(1)).min()
    assert cos > 0.6  # 784 dims, 2000 antithetic pairs: expected cosine ~ sqrt(2000/784)/... well above chance (~0.04)


# ---------------------------------------------------------------------------------------------------------------
# AutoAttack, the gradient-free attack, best iterates


def test_autoattack_is_the_standard_version_and_lite_is_lighter():
    import torchattacks

    from advrep.attacks.autoattack import STANDARD, counts, standard_autoattack

    model = linear_model()
    got = counts(standard_autoattack(model, 0.1))
    assert got == STANDARD
    assert got["apgd_iter"] == got["apgd_t_iter"] == got["fab_iter"] == 100 and got["square_queries"] == 5000
    assert got["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"] and got["apgd_t_targets"] == 9
    lite = torchattacks.AutoAttack(model, norm="Linf", eps=0.1, version="standard", n_classes=10, seed=0)
    assert [getattr(a, "steps", None) for a in lite._autoattack.attacks][:3] == [10, 10, 10]


def test_autoattack_parts_run_only_those_attacks_and_are_not_called_autoattack(monkeypatch):
    import pyautoattack

    from advrep.config import AttackConfig

    ran = []
    real = pyautoattack.AutoAttack.run_standard_evaluation

    def spy(self, x, y, **kw):
        ran.append((list(self.attacks_to_run), self.apgd_targeted.n_iter, self.apgd_targeted.n_target_classes))
        return real(self, x, y, **kw)

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", spy)
    model = linear_model()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    A.autoattack(model, x, y, 0.1, parts=("apgd-t", "apgd-ce"))
    assert ran == [(["apgd-ce", "apgd-t"], 100, 9)]  # AutoAttack's order, its iterations and targets
    with pytest.raises(ValueError, match="subset"):
        A.autoattack(model, x, y, 0.1, parts=("apgd-dlr",))
    AttackConfig(name="APGD-CE + APGD-T (BPDA)", kind="autoattack_bpda", parts=["apgd-ce", "apgd-t"])
    with pytest.raises(ValueError, match="lighter attack"):
        AttackConfig(name="AutoAttack (fast)", kind="autoattack", parts=["apgd-ce", "apgd-t"])
    with pytest.raises(ValueError, match="autoattack kinds"):
        AttackConfig(name="PGD", kind="pgd", parts=["apgd-ce"])


def test_autoattack_standard_matches_pgd_on_a_linear_model(mnist_small):
    """On a softmax regression the loss is convex in x: AutoAttack can be no weaker than PGD, and both agree closely."""
    model, te = mnist_small
    x, y = te.x[:100], te.y[:100]
    aa = A.autoattack(model, x, y, 0.1)
    assert (aa - x).abs().max() <= 0.1 + 1e-6 and aa.min() >= 0 and aa.max() <= 1
    with torch.no_grad():
        acc_aa = (model(aa).argmax(1) == y).float().mean().item()
    r = A.pgd(model, x, y, A.Linf(0.1), 100, 0.0025)
    acc_pgd = 1 - r.success.float().mean().item()
    assert acc_aa <= acc_pgd + 0.02


def test_gradient_free_grows_its_samples_and_freezes_successes():
    model = linear_model()
    oracle = A.GradientFree(model, 0.1, [(2, 10), (4, 20), (100, 40)])
    assert [oracle.samples(s) for s in (0, 1, 2, 3, 4, 99)] == [10, 10, 20, 20, 40, 40]
    calls = []

    class Spy(A.GradientFree):
        def __call__(self, x_adv, labels):
            calls.append((self.samples(self.calls), len(x_adv)))
            return super().__call__(x_adv, labels)

    torch.manual_seed(0)
    x = torch.rand(32, 1, 28, 28)
    y = model(x).argmax(1)
    r = A.pgd(model, x, y, A.Linf(0.3), 6, 0.1, random_start=False, loss="margin", early_stop=True,
              grad=Spy(model, 0.1, [(2, 10), (4, 20), (100, 40)]))
    assert [c[0] for c in calls] == [10, 10, 20, 20, 40, 40][:len(calls)]
    assert all(a[1] >= b[1] for a, b in zip(calls, calls[1:]))  # frozen examples leave the batch
    assert r.success.float().mean() > 0.5  # a linear model falls to an estimated gradient too


def test_transfer_keeps_each_examples_best_iterate_on_the_target():
    torch.manual_seed(0)
    src, tgt = linear_model(0), linear_model(1)
    x = torch.rand(64, 1, 28, 28)
    y = tgt(x).argmax(1)
    r = A.pgd(src, x, y, A.Linf(0.2), 10, 0.05, best=True, judge=tgt)
    with torch.no_grad():
        ok = tgt(r.x).argmax(1) != y
    assert torch.equal(ok, r.success)  # success is the target's, on the returned iterate
    last = A.pgd(src, x, y, A.Linf(0.2), 10, 0.05)
    with torch.no_grad():
        ok_last = tgt(last.x).argmax(1) != y
    assert ok.float().mean() >= ok_last.float().mean()


@pytest.mark.parametrize("threat", [A.Linf(0.1), A.L2(1.0)])
def test_projector_is_project(threat):
    """The per-attack projector (bounds computed once) gives exactly what `project` gives, also when it may write
    into the iterate's buffer (as the loop lets it) and the ascent step it is given is written into first."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    xa = x + 0.5 * torch.randn(16, 1, 8, 8, generator=g)
    want = threat.project(xa, x)
    assert torch.equal(threat.projector(x)(xa), want)
    buf = xa.clone()
    assert torch.equal(threat.projector(x)(buf, out=buf), want)
    grad = torch.randn(16, 1, 8, 8, generator=g)
    step = threat.ascent(grad)
    assert step.data_ptr() != grad.data_ptr()  # a new tensor: the loop's writes into it leave the gradient alone
    torch.add(xa, step, alpha=0.1, out=step)
    want = threat.project(torch.add(xa, threat.ascent(grad), alpha=0.1), x)
    assert torch.equal(threat.projector(x)(step, out=step), want)
