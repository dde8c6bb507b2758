"""Non-robust datasets: relabelling, resumable chunked generation, storage precision, the no-perturbation control."""
import numpy as np
import pytest
import torch

import torch.nn.functional as F

from advrep import attacks, models, store
from advrep.data import DataError, Split
from advrep.experiments import nonrobust


@pytest.fixture
def cifar_like():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 3, 32, 32, generator=g)
    return Split(x, torch.arange(24) % 10, torch.arange(100, 124))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return models.build({"arch": "cifar_cnn", "dataset": "cifar10", "widths": [4, 8, 8]}).eval()


def test_targets_det_rand_and_other():
    y = torch.arange(10).repeat(500)
    assert torch.equal(nonrobust.targets(y, "det"), (y + 1) % 10)
    r = nonrobust.targets(y, "rand", seed=3)
    # D_rand: uniform over all ten classes, independent of y (t = y about a tenth of the time, every class as often)
    assert 0.07 < (r == y).float().mean() < 0.13
    counts = torch.bincount(r, minlength=10).float() / len(r)
    assert (counts - 0.1).abs().max() < 0.02
    assert torch.equal(r, nonrobust.targets(y, "rand", seed=3)) and not torch.equal(r, nonrobust.targets(y, "rand", 4))
    o = nonrobust.targets(y, "other", seed=3)  # D_other: never the true class
    assert (o != y).all() and len(o.unique()) == 10
    with pytest.raises(ValueError, match="unknown relabelling"):
        nonrobust.targets(y, "shuffle")


def test_generation_is_targeted_l2_within_eps_best_iterate_and_resumes(cifar_like, net, tmp_path, monkeypatch):
    t = nonrobust.targets(cifar_like.y, "det")
    kw = dict(threat=attacks.L2(0.5), steps=5, step=0.1, batch_size=8, chunk=10, key="k",
              device=torch.device("cpu"))
    resume = store.Resume("nrf", root=tmp_path)
    d1, ok1 = nonrobust.generate(net, cifar_like, t, resume=resume, **kw)
    assert d1.shape == cifar_like.x.shape
    assert (d1.flatten(1).norm(dim=1) <= 0.5 + 1e-3).all()
    with torch.no_grad():
        hit = net((cifar_like.x + d1).clamp(0, 1)).argmax(1) == t
    assert (hit == ok1).float().mean() > 0.9  # success = the source model predicts the target (float16 round-off)
    assert len(list(resume.dir.glob("*.pt"))) == 3  # one entry per chunk of 10
    # a second run with the same key loads every chunk instead of attacking
    monkeypatch.setattr(attacks, "pgd", lambda *a, **k: pytest.fail("recomputed a finished chunk"))
    d2, ok2 = nonrobust.generate(net, cifar_like, t, resume=resume, **kw)
    assert torch.equal(d1, d2) and torch.equal(ok1, ok2)
    resume.clear()
    assert not resume.dir.exists()


def test_generation_keeps_each_examples_best_iterate(cifar_like, net):
    """The returned perturbation is the iterate with the lowest loss towards t, not the last one."""
    t = nonrobust.targets(cifar_like.y, "det")
    x, y = cifar_like.x, cifar_like.y
    best = attacks.pgd(net, x, y, attacks.L2(2.0), 8, 1.5, target=t, random_start=False, best=True)
    last = attacks.pgd(net, x, y, attacks.L2(2.0), 8, 1.5, target=t, random_start=False)
    with torch.no_grad():
        lb = F.cross_entropy(net(best.x), t, reduction="none")
        ll = F.cross_entropy(net(last.x), t, reduction="none")
    # success first: an example that reached t at some step keeps a successful iterate
    assert (best.success >= last.success).all()
    same = best.success == last.success
    assert (lb[same] <= ll[same] + 1e-5).all()


@pytest.mark.parametrize("change", ["targets", "attack", "source", "images"])
def test_chunks_keyed_by_everything_that_defines_them_are_recomputed(cifar_like, net, tmp_path, monkeypatch, change):
    t = nonrobust.targets(cifar_like.y, "det")
    kw = dict(threat=attacks.L2(0.5), steps=2, step=0.1, batch_size=8, chunk=24, device=torch.device("cpu"))
    resume = store.Resume("nrf", root=tmp_path)
    base = dict(src="s", images=store.tensor_hash(cifar_like.x), targets=store.tensor_hash(t), eps=0.5, steps=2)
    nonrobust.generate(net, cifar_like, t, resume=resume, key=store.key(base), **kw)
    calls = []
    real = attacks.pgd

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(attacks, "pgd", spy)
    other = dict(base)
    other[{"targets": "targets", "attack": "eps", "source": "src", "images": "images"}[change]] = "changed"
    nonrobust.generate(net, cifar_like, t, resume=resume, key=store.key(other), **kw)
    assert calls
    calls.clear()
    nonrobust.generate(net, cifar_like, t, resume=resume, key=store.key(base), **kw)
    assert not calls  # the original key is still served


def test_storage_keeps_the_perturbation_and_control_drops_it(cifar_like, tmp_path):
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(24, 3, 32, 32, generator=g)
    delta = 0.5 * delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)  # L2 0.5: ~0.009 per pixel
    x = cifar_like.x.clamp(0.1, 0.9)  # keep clean of the box so clamping does not interfere
    src = Split(x, cifar_like.y, cifar_like.index)
    t = nonrobust.targets(src.y, "det")
    nonrobust.save(tmp_path / "d.npz", src.index, t, src.y, delta, torch.ones(24, dtype=torch.bool))
    back = nonrobust.load(tmp_path / "d.npz", src)
    err = (back.x - (x + delta)).flatten(1).norm(dim=1) / 0.5
    assert err.max() < 1e-3  # float16 storage keeps the perturbation to 0.1% (uint8 would lose most of it)
    uint8 = ((x + delta) * 255).round() / 255
    assert ((uint8 - (x + delta)).flatten(1).norm(dim=1) / 0.5).min() > 0.1
    assert torch.equal(back.y, t) and torch.equal(back.index, src.index)
    ctl = nonrobust.load(tmp_path / "d.npz", src, perturbed=False)
    assert torch.equal(ctl.x, x) and torch.equal(ctl.y, t)
    with np.load(tmp_path / "d.npz") as z:
        assert z["delta"].dtype == np.float16 and torch.equal(torch.from_numpy(z["orig_label"]), src.y)


def test_load_names_a_missing_file_and_foreign_indices(cifar_like, tmp_path):
    with pytest.raises(DataError, match="nrf_generate"):
        nonrobust.load(tmp_path / "nope.npz", cifar_like)
    other = Split(cifar_like.x, cifar_like.y, torch.arange(24))
    nonrobust.save(tmp_path / "d.npz", other.index, other.y, other.y, torch.zeros(24, 3, 32, 32),
                   torch.ones(24, dtype=torch.bool))
    with pytest.raises(DataError, match="not in the given split"):
        nonrobust.load(tmp_path / "d.npz", cifar_like)
