"""Pieces of the MNIST experiments: the P1/P2 split, amplification, noise baselines, transfer table, FGSM objective."""
import pytest
import torch
import torch.nn.functional as F

from advrep import attacks, models, robust, transfer


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


def test_other_labels_never_equal_the_true_label():
    y = torch.arange(10).repeat(100)
    t = transfer.other_labels(y, seed=0)
    assert (t != y).all() and len(t.unique()) == 10


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


def test_fgsm_objective_is_the_papers_mixture():
    torch.manual_seed(0)
    m = models.build({"arch": "mlp", "dataset": "mnist", "widths": []})
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    loss = robust.fgsm_objective(0.25, alpha=0.5)(m, x, y)
    x_adv = attacks.fgsm(m, x, y, 0.25).x
    expected = 0.5 * F.cross_entropy(m(x), y) + 0.5 * F.cross_entropy(m(x_adv), y)
    torch.testing.assert_close(loss, expected)
    loss.backward()  # gradients reach the parameters again after the attack froze them
    assert all(p.grad is not None for p in m.parameters())


def test_maxout_layer_takes_the_max_of_its_pieces():
    layer = models.Maxout(3, units=2, pieces=4)
    x = torch.randn(5, 3)
    expected = layer.linear(x).view(5, 2, 4).amax(2)
    torch.testing.assert_close(layer(x), expected)


def test_sat_objective_switches_the_attackers_and_the_optimizers_gradient_separately(monkeypatch):
    torch.manual_seed(0)
    m = models.build({"arch": "mlp", "dataset": "mnist", "widths": [16], "activation": "relu_smoothgrad"})
    act = [a for a in m.modules() if isinstance(a, models.SwitchableReLU)][0]
    seen = []
    real = attacks.pgd

    def spy(model, *a, **k):
        seen.append(("attack", act.smooth))
        return real(model, *a, **k)

    monkeypatch.setattr(attacks, "pgd", spy)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for attacker, optimizer in ((True, False), (False, True)):
        seen.clear()
        obj = robust.pgd_objective(attacks.Linf(0.1), 1, 0.125, True, attacker, optimizer)
        loss = obj(m, x, y)
        assert seen == [("attack", attacker)]
        assert act.smooth is False  # restored after the objective
        loss.backward()  # the weights get gradients again after the attack froze them
        assert m.body[1].weight.grad is not None
        m.zero_grad()


def test_smooth_optimizer_gradient_differs_from_relus():
    torch.manual_seed(0)
    m = models.build({"arch": "mlp", "dataset": "mnist", "widths": [16], "activation": "relu_smoothgrad"})
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    grads = {}
    for on in (False, True):
        with models.smooth_backward(m, on):
            loss = F.cross_entropy(m(x), y)
        grads[on], = torch.autograd.grad(loss, m.body[1].weight)
    assert not torch.allclose(grads[False], grads[True])


def test_overfit_monitor_and_catastrophic_overfitting_detection():
    torch.manual_seed(0)
    m = models.build({"arch": "mlp", "dataset": "mnist", "widths": []}).eval()
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    row = robust.overfit_monitor(x, y, attacks.Linf(0.3), steps=5)(0, m)
    assert set(row) == {"monitor_clean_acc", "monitor_pgd_acc"}
    assert row["monitor_pgd_acc"] <= row["monitor_clean_acc"]
    assert robust.catastrophic_overfitting([0.30, 0.35, 0.38, 0.02, 0.0]) == 4
    assert robust.catastrophic_overfitting([0.30, 0.33, 0.31, 0.34]) is None
    assert robust.catastrophic_overfitting([0.01, 0.0, 0.0]) is None  # never robust: nothing to lose
