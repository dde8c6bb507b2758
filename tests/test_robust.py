"""Adversarial-training objectives: SAT's separate switches, the overfitting monitor and its detector."""
import torch
import torch.nn.functional as F

from advrep import attacks, models, robust


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
