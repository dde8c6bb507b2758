"""Models: shapes per architecture, normalisation inside the model, save/load round trip, activation factory."""
import contextlib

import pytest
import torch
import torch.nn.functional as F

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


@pytest.mark.parametrize("name", sorted(set(models.ACTIVATIONS) - {"relu_kwta"}))
def test_every_activation_builds_and_is_used(name):
    m = models.build({"arch": "mnist_cnn", "dataset": "mnist", "activation": name})
    kinds = {type(a) for a in m.modules()} & {type(models.activation(n)) for n in models.ACTIVATIONS} - {
        torch.nn.Sequential}
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


def test_smooth_relu_matches_its_formula_and_has_a_continuous_derivative():
    x = torch.linspace(-2, 2, 401, dtype=torch.float64, requires_grad=True)
    f = models.SmoothReLU(20.0)
    y = f(x)
    want = torch.where(x >= 0, x - torch.log1p(20 * x.clamp_min(0)) / 20, torch.zeros_like(x))
    torch.testing.assert_close(y, want)
    g, = torch.autograd.grad(y.sum(), x)
    assert g.diff().abs().max() < 0.2  # no jump at 0 (ReLU's derivative jumps by 1)
    assert (g >= 0).all() and g[-1] > 0.95  # tends to ReLU's slope away from 0


def test_switchable_relu_forward_is_relu_and_backward_switches():
    x = torch.linspace(-1, 1, 21, requires_grad=True)
    net = torch.nn.Sequential(models.SwitchableReLU(10.0))
    for on, want in ((False, (x > 0).float()), (True, torch.sigmoid(10 * x))):
        with models.smooth_backward(net, on):
            y = net(x)
            g, = torch.autograd.grad(y.sum(), x)
        torch.testing.assert_close(y, torch.relu(x))
        torch.testing.assert_close(g, want.detach())
    assert net[0].smooth is False  # restored


def test_kwta_keeps_the_k_largest_per_example_over_all_of_chw():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4, 4)  # 48 values per example; gamma 0.1 -> k = int(4.8) = 4
    out = models.KWTA(0.1)(x)
    kept = out != 0
    assert (kept.flatten(1).sum(1) == 4).all()
    for i in range(5):  # the survivors are exactly each example's own top 4, unchanged
        top = x[i].flatten().topk(4).indices
        assert set(kept[i].flatten().nonzero().squeeze(1).tolist()) == set(top.tolist())
        torch.testing.assert_close(out[i].flatten()[top], x[i].flatten()[top])


@pytest.mark.parametrize("layer", [models.KWTA(0.1), models.BatchKWTA(0.1)])
def test_kwta_is_the_same_function_in_channels_last_and_keeps_the_layout(layer):
    """The threshold is taken over each example's C*H*W values in memory order (no copy): the same values and the
    same gradient as in NCHW, and a channels-last input stays channels-last (the attack loop runs conv nets so)."""
    torch.manual_seed(0)
    x = torch.randn(6, 8, 7, 7, requires_grad=True)
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out, outc = layer(x), layer(xc)
    assert outc.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, outc)
    g = torch.randn_like(out)
    out.backward(g)
    outc.backward(g)
    assert torch.equal(x.grad, xc.grad) and torch.equal(x.grad != 0, out != 0)  # gradient through the kept units


def test_kwta_soft_kwta_and_maxout_equal_their_plain_formulas_exactly():
    """The fast forms (threshold on the detached input in memory order, where() for the mask, max for maxout) are
    the same function as the plain formulas, bit for bit, values and gradients: results made before them stand."""
    torch.manual_seed(0)

    def plain_kwta(x, k, first=False):
        flat = x[:1].flatten(1) if first else x.flatten(1)
        kth = flat.topk(k, dim=1, sorted=False).values.amin(1).view(-1, *([1] * (x.ndim - 1)))
        return x * (x >= kth).to(x.dtype)

    def check(fast, plain, x):
        for inp in (x, x.contiguous(memory_format=torch.channels_last)) if x.ndim == 4 else (x,):
            a, b = inp.detach().clone().requires_grad_(True), inp.detach().clone().requires_grad_(True)
            ya, yb = fast(a), plain(b)
            g = torch.randn_like(ya)
            ya.backward(g)
            yb.backward(g)
            assert torch.equal(ya, yb) and torch.equal(a.grad, b.grad)

    x = torch.randn(7, 8, 9, 9)
    k = models.KWTA(0.1).k(8 * 81)
    check(models.KWTA(0.1), lambda v: plain_kwta(v, k), x)
    check(models.BatchKWTA(0.1), lambda v: plain_kwta(v, k, first=True), x)
    check(models.KWTA(0.1), lambda v: plain_kwta(v, 12), torch.randn(7, 128))

    def plain_soft(v, k=k, temperature=0.1):
        flat = v.flatten(1)
        low = flat.detach().topk(k + 1, dim=1, sorted=False).values.topk(2, dim=1, largest=False).values
        t = ((low[:, 1] + low[:, 0]) / 2).view(-1, 1, 1, 1)
        scale = (flat.std(1).detach() * temperature).clamp_min(1e-6).view_as(t)
        return v * torch.sigmoid((v - t) / scale)
    check(models.SoftKWTA(0.1, 0.1), plain_soft, x)
    mx = models.Maxout(20, 6, 5)
    check(mx, lambda v: mx.linear(v).view(len(v), 6, 5).amax(2), torch.randn(9, 20))


def test_kwta_k_rounding_and_ties():
    k = models.KWTA(0.25)
    assert [k.k(n) for n in (1, 3, 4, 7, 8, 100)] == [1, 1, 1, 1, 2, 25]  # floor, at least one
    x = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.5, 0.1, 0.0, -1.0]])  # k = 2; the 2nd largest value (2.0) is tied
    assert models.KWTA(0.25)(x).tolist() == [[3.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="gamma"):
        models.KWTA(0.0)


@pytest.mark.parametrize("shape", [(1, 9), (5, 300), (37, 4096)])  # the last is split across torch's threads
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kth_largest_is_the_sorted_rows_kth_element_on_either_path(shape, dtype):
    """k-WTA's selection (numpy's introselect on the CPU, torch.topk elsewhere or inside torch_topk): per row, the
    element a descending sort puts at place k, ties and all, for several k at once."""
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=dtype).round(decimals=1)  # many ties
    ks = sorted({1, max(1, shape[1] // 10), max(1, shape[1] // 10) + 1, shape[1]} - {shape[1] + 1})
    want = x.sort(1, descending=True).values
    for path in (contextlib.nullcontext, models.torch_topk):
        with path():
            got = models.kth_largest(x, ks)
        for k, g in zip(ks, got):
            assert g.dtype == dtype and torch.equal(g, want[:, k - 1]), (path, k)
    assert models.SELECT_NUMPY  # torch_topk restored the switch
    nan = torch.tensor([[float("nan"), 2.0, 1.0, 2.0]], dtype=dtype)  # NaN ranks as the largest on both paths
    for path in (contextlib.nullcontext, models.torch_topk):
        with path():
            assert [v.item() for v in models.kth_largest(nan, [2, 3, 4])] == [2.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="every k"):
        models.kth_largest(x, [0])


def test_kwta_dense_layer_and_batch_independence():
    torch.manual_seed(1)
    x = torch.randn(64, 50)
    full = models.KWTA(0.2)(x)
    one = torch.cat([models.KWTA(0.2)(x[i:i + 1]) for i in range(64)])
    assert torch.equal(full, one)  # no example sees another
    assert ((full != 0).sum(1) == 10).all()


def test_soft_kwta_tends_to_kwta_and_has_useful_gradients():
    torch.manual_seed(2)
    x = torch.randn(4, 200, dtype=torch.float64)
    hard = models.KWTA(0.1)(x)
    cold = models.SoftKWTA(0.1, temperature=1e-4)(x)
    torch.testing.assert_close(cold, hard, atol=1e-2, rtol=0)
    x.requires_grad_(True)
    g, = torch.autograd.grad(models.SoftKWTA(0.1, 0.1)(x).sum(), x)
    assert (g.abs() > 1e-3).float().mean() > 0.1  # not only the winners get gradient


def test_kwta_models_record_gamma():
    m = models.build({"arch": "mnist_cnn", "dataset": "mnist", "activation": "kwta", "gamma": 0.2})
    assert m.config["gamma"] == 0.2
    assert [a.gamma for a in m.modules() if isinstance(a, models.KWTA)] == [0.2, 0.2, 0.2]
    assert "gamma" not in models.build({"arch": "mnist_cnn", "dataset": "mnist"}).config


def test_blog_kwta_takes_its_threshold_from_the_first_example():
    layer = models.BatchKWTA(gamma=0.25)
    x = torch.tensor([[4.0, 3.0, 2.0, 1.0], [10.0, 0.5, 3.5, 2.5], [0.1, 0.2, 0.3, 0.4]])
    out = layer(x)
    # k = 1 of 4 units; example 0's largest value is 4: every example keeps its values >= 4
    assert torch.equal(out, torch.tensor([[4.0, 0, 0, 0], [10.0, 0, 0, 0], [0, 0, 0, 0]]))
    # the same example in another batch meets another function
    alone = layer(x[1:2])
    assert torch.equal(alone, torch.tensor([[10.0, 0, 0, 0]]))
    assert torch.equal(layer(x[[2, 1]])[1], torch.tensor([10.0, 0.5, 3.5, 2.5]))  # threshold 0.4: keeps all
    # with a batch of one it is the paper's per-example k-WTA
    per = models.KWTA(gamma=0.25)
    for row in x:
        assert torch.equal(layer(row[None]), per(row[None]))


def test_the_authors_mnist_layout_and_rbf():
    torch.manual_seed(0)
    m = models.build({"arch": "xiao_mnist", "activation": "kwta", "gamma": 0.1, "widths": [4, 4, 8, 8, 32],
                      "dataset": "mnist"})
    kinds = [type(l).__name__ for l in m.body]
    assert kinds.count("KWTA") == 5 and "ReLU" not in kinds and "BatchNorm2d" not in kinds
    assert [l.stride for l in m.body if isinstance(l, torch.nn.Conv2d)] == [(1, 1), (2, 2), (1, 1), (2, 2)]
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    r = models.build({"arch": "rbf", "dataset": "mnist"})
    far = r(torch.full((1, 1, 28, 28), 50.0))
    assert far.max() < -10  # far from every centre, every class is unlikely


@pytest.mark.parametrize("batch,inp,out", [(64, 512, 512), (200, 3136, 128), (8, 784, 100)])
def test_linear_on_onednn_matches_torch_linear(batch, inp, out):
    """advrep's Linear (oneDNN's GEMM above a size, torch's kernel below) against F.linear: values and both
    gradients agree to fp32 rounding, and the big products do take the oneDNN path."""
    torch.manual_seed(0)
    layer = models.Linear(inp, out)
    x = torch.randn(batch, inp, requires_grad=True)
    calls = []
    real = F.conv2d
    with pytest.MonkeyPatch.context() as mp, models.onednn_linear(True):  # whatever this CPU's default
        mp.setattr(models.F, "conv2d", lambda *a, **k: calls.append(1) or real(*a, **k))
        y = layer(x)
    y.square().sum().backward()
    gx, gw, gb = x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone()
    x.grad = layer.weight.grad = layer.bias.grad = None
    ref = F.linear(x, layer.weight, layer.bias)
    ref.square().sum().backward()
    assert bool(calls) == (batch >= layer.MIN_BATCH and batch * inp * out >= layer.MIN_MACS)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-4)
    for a, b in ((gx, x.grad), (gw, layer.weight.grad), (gb, layer.bias.grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
    before = models.Linear.ONEDNN
    with models.torch_linear():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert models.Linear.ONEDNN == before


@pytest.mark.parametrize("vendor,flags,expected", [("AuthenticAMD", "fpu sse avx2 avx512f avx512_bf16", True),
                                                   ("AuthenticAMD", "fpu sse avx2 fma", False),
                                                   ("GenuineIntel", "fpu sse avx2 avx512f", False),
                                                   (None, None, False)])
def test_onednn_dense_kernel_only_on_amd_with_avx512(monkeypatch, vendor, flags, expected):
    """The dense kernel follows the CPU as /proc/cpuinfo names it: oneDNN on AMD CPUs with AVX-512 (MKL's slow path
    there), torch's kernel on Intel CPUs and on AMD CPUs without AVX-512 (where oneDNN's was slower in training)."""
    monkeypatch.setattr(models, "cpu_info", lambda field: {"vendor_id": vendor, "flags": flags}[field])
    assert models._mkl_slow_cpu() is expected
