"""Models: shapes per architecture, normalisation inside the model, save/load round trip, activation factory."""
import pytest
import torch

from advrep import models
from advrep.data import STATS


@pytest.mark.parametrize("arch,dataset,widths", [
    ("mlp", "mnist", [100, 100]), ("mlp", "mnist", []), ("maxout", "mnist", None), ("mnist_cnn", "mnist", None),
    ("cifar_cnn", "cifar10", None), ("resnet18", "cifar10", None), ("resnet50", "cifar10", None),
])
def test_output_shape(arch, dataset, widths):
    m = models.build({"arch": arch, "dataset": dataset, "widths": widths}).eval()
    x = torch.rand(2, *models.INPUT_SHAPE[dataset])
    assert m(x).shape == (2, 10)


def test_mlp_without_hidden_layers_is_softmax_regression():
    m = models.build({"arch": "mlp", "dataset": "mnist", "widths": []})
    assert [type(l).__name__ for l in m.body] == ["Flatten", "Linear"]


@pytest.mark.parametrize("dataset,arch", [("mnist", "mnist_cnn"), ("cifar10", "cifar_cnn")])
def test_normalisation_lives_inside_the_model(dataset, arch):
    m = models.build({"arch": arch, "dataset": dataset}).eval()
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in STATS[dataset])
    x = torch.rand(3, *models.INPUT_SHAPE[dataset])
    torch.testing.assert_close(m(x), m.body((x - mean) / std))


def test_save_load_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    m = models.build({"arch": "cifar_cnn", "dataset": "cifar10", "widths": [8, 16, 16], "activation": "silu"})
    m.train()(torch.rand(16, 3, 32, 32))  # move BatchNorm running stats away from their init
    models.save(m.eval(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.pt"]
    back = models.load(tmp_path)
    assert back.config == m.config and not back.training
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(back(x), m(x))


def test_checkpoint_holds_only_tensors(tmp_path):
    models.save(models.build({"arch": "mlp", "dataset": "mnist"}), tmp_path)
    state = torch.load(tmp_path / "model.pt", weights_only=True)  # would raise on pickled code
    assert all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("name", sorted(models.ACTIVATIONS))
def test_every_activation_builds_and_is_used(name):
    m = models.build({"arch": "mnist_cnn", "dataset": "mnist", "activation": name})
    kinds = {type(a) for a in m.modules()} & {type(models.activation(n)) for n in models.ACTIVATIONS}
    assert kinds == {type(models.activation(name))}


def test_resnet_activation_swapped_everywhere():
    m = models.build({"arch": "resnet18", "dataset": "cifar10", "activation": "gelu"})
    assert not any(isinstance(x, torch.nn.ReLU) for x in m.modules())
    assert any(isinstance(x, torch.nn.GELU) for x in m.modules())


def test_parametric_softplus_matches_its_formula():
    x = torch.linspace(-3, 3, 101)
    torch.testing.assert_close(models.activation("psoftplus")(x), torch.log1p(torch.exp(10 * x)) / 10)


def test_bad_builds_say_why():
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        models.build({"arch": "mlp", "dataset": "mnist", "activation": "nope"})
    with pytest.raises(ValueError, match="built for cifar10, not mnist"):
        models.build({"arch": "cifar_cnn", "dataset": "mnist"})
    with pytest.raises(ValueError, match="must hold 3 numbers"):
        models.build({"arch": "mnist_cnn", "dataset": "mnist", "widths": [4, 4]})
