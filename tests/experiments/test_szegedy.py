"""Szegedy et al.'s pieces: the P1/P2 split, amplification, the noise baseline, the transfer table."""
import pytest
import torch
import torch.nn.functional as F

from advrep import attacks, models
from advrep.experiments import szegedy as transfer


def test_halves_are_disjoint_seeded_and_cover_everything():
    p1, p2 = transfer.halves(60000, seed=0)
    assert len(p1) == len(p2) == 30000
    assert len(torch.cat([p1, p2]).unique()) == 60000
    q1, _ = transfer.halves(60000, seed=0)
    r1, _ = transfer.halves(60000, seed=1)
    assert torch.equal(p1, q1) and not torch.equal(p1, r1)


def test_amplify_rescales_to_the_asked_distortion():
    x = torch.full((5, 1, 28, 28), 0.5)
    x_adv = x + 0.01 * torch.randn_like(x)
    out = transfer.amplify(x, x_adv, 0.1)
    torch.testing.assert_close(attacks.rms(out - x), torch.full((5,), 0.1), atol=2e-3, rtol=0)
    # the direction is kept
    cos = F.cosine_similarity((out - x).flatten(1), (x_adv - x).flatten(1))
    assert (cos > 0.999).all()


def test_gaussian_noise_has_the_asked_stddev_and_stays_in_the_box():
    x = torch.full((20, 1, 28, 28), 0.5)
    out = transfer.gaussian(x, 0.1, seed=0)
    assert out.min() >= 0 and out.max() <= 1
    assert abs(attacks.rms(out - x).mean().item() - 0.1) < 0.005


def test_error_matrix_rows_and_columns():
    torch.manual_seed(0)
    a = models.build({"arch": "mlp", "dataset": "mnist", "widths": []}).eval()
    b = models.build({"arch": "mlp", "dataset": "mnist", "widths": [8]}).eval()
    x = torch.rand(30, 1, 28, 28)
    y = a(x).argmax(1)
    t = transfer.error_matrix({"a": a, "b": b}, {"clean": x}, y)
    assert list(t.columns) == ["a", "b"] and list(t.index) == ["clean"]
    assert t.loc["clean", "a"] == 0.0
    assert t.loc["clean", "b"] == pytest.approx((b(x).argmax(1) != y).float().mean().item())
