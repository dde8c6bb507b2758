"""Non-robust datasets: relabelling, resumable chunked generation, storage precision, the no-perturbation control."""
import numpy as np
import pytest
import torch

from advrep import attacks, models
from advrep.experiments import nonrobust
from advrep.data import Split


@pytest.fixture
def cifar_like():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 3, 32, 32, generator=g)
    return Split(x, torch.arange(24) % 10, torch.arange(100, 124))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return models.build({"arch": "cifar_cnn", "dataset": "cifar10", "widths": [4, 8, 8]}).eval()


def test_targets_det_and_rand():
    y = torch.arange(10).repeat(50)
    assert torch.equal(nonrobust.targets(y, "det"), (y + 1) % 10)
    r = nonrobust.targets(y, "rand", seed=3)
    assert (r != y).all() and len(r.unique()) == 10
    assert torch.equal(r, nonrobust.targets(y, "rand", seed=3))
    with pytest.raises(ValueError, match="det' or 'rand"):
        nonrobust.targets(y, "shuffle")


def test_generation_is_targeted_l2_within_eps_and_resumes(cifar_like, net, tmp_path, monkeypatch):
    t = nonrobust.targets(cifar_like.y, "det")
    kw = dict(threat=attacks.L2(0.5), steps=5, step=0.1, batch_size=8, chunk=10, key="k",
              device=torch.device("cpu"))
    d1, ok1 = nonrobust.generate(net, cifar_like, t, workdir=tmp_path, **kw)
    assert d1.shape == cifar_like.x.shape
    assert (d1.flatten(1).norm(dim=1) <= 0.5 + 1e-3).all()
    with torch.no_grad():
        hit = net((cifar_like.x + d1).clamp(0, 1)).argmax(1) == t
    assert (hit == ok1).float().mean() > 0.9  # success = the source model predicts the target (float16 round-off)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk0000.npz", "chunk0001.npz", "chunk0002.npz"]
    # a second run with the same key loads every chunk instead of attacking
    monkeypatch.setattr(attacks, "pgd", lambda *a, **k: pytest.fail("recomputed a finished chunk"))
    d2, ok2 = nonrobust.generate(net, cifar_like, t, workdir=tmp_path, **kw)
    assert torch.equal(d1, d2) and torch.equal(ok1, ok2)


def test_chunks_of_another_configuration_are_recomputed(cifar_like, net, tmp_path, monkeypatch):
    t = nonrobust.targets(cifar_like.y, "det")
    kw = dict(threat=attacks.L2(0.5), steps=2, step=0.1, batch_size=8, chunk=24, device=torch.device("cpu"))
    nonrobust.generate(net, cifar_like, t, workdir=tmp_path, key="a", **kw)
    calls = []
    real = attacks.pgd

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(attacks, "pgd", spy)
    nonrobust.generate(net, cifar_like, t, workdir=tmp_path, key="b", **kw)
    assert calls


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
    with pytest.raises(FileNotFoundError, match="nrf_generate"):
        nonrobust.load(tmp_path / "nope.npz", cifar_like)
    other = Split(cifar_like.x, cifar_like.y, torch.arange(24))
    nonrobust.save(tmp_path / "d.npz", other.index, other.y, other.y, torch.zeros(24, 3, 32, 32),
                   torch.ones(24, dtype=torch.bool))
    with pytest.raises(ValueError, match="not in the given split"):
        nonrobust.load(tmp_path / "d.npz", cifar_like)
