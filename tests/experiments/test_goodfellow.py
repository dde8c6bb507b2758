"""Goodfellow et al.'s pieces: the FGSM training objective and the maxout layer."""
import torch
import torch.nn.functional as F

from advrep import attacks, models, robust


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
