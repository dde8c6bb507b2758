"""Training loop: LR schedules, augmentation, learning on toy data, and exact resume after an interruption."""
import pytest
import torch
import torch.nn.functional as F

from advrep import config, models, train
from advrep.experiments import schemas

SCHEMAS = schemas()


def _setup(tiny_cfg):
    cfg = config.validate("train_mnist", tiny_cfg, SCHEMAS["train_mnist"])
    torch.manual_seed(cfg.seed)
    model = models.build(cfg.model.model_dump() | {"dataset": "mnist"})
    return cfg, model


def test_onecycle_schedule_shape(tiny_cfg):
    cfg = config.validate("train_mnist", tiny_cfg, SCHEMAS["train_mnist"]).optim
    f = [train.lr_factor(cfg, s, 10, 3) for s in range(30)]
    assert f[0] == pytest.approx(0.1) and max(f) == pytest.approx(1.0, abs=0.05)
    assert f[-1] == pytest.approx(0.01) and f.index(max(f)) == pytest.approx(0.2 * 29, abs=1)


def test_step_schedule_drops_at_milestones(tiny_cfg):
    tiny_cfg["optim"] |= {"schedule": "step", "milestones": [1, 2], "gamma": 0.5}
    cfg = config.validate("train_mnist", tiny_cfg, SCHEMAS["train_mnist"]).optim
    assert [train.lr_factor(cfg, s, 10, 3) for s in (0, 9, 10, 19, 20)] == [1, 1, 0.5, 0.5, 0.25]


def test_augment_translates_and_flips_each_example_independently():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = train.augment(x, config.AugmentConfig(crop=0, flip=True), torch.Generator().manual_seed(1))
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(2))
    out = train.augment(x, config.AugmentConfig(crop=2, flip=False), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # the interior of a translated image is the original shifted by (dy, dx) with |dy|, |dx| <= 2
    for i in range(2):
        ok = any(torch.equal(out[i, :, 2:6, 2:6], x[i, :, 2 + dy:6 + dy, 2 + dx:6 + dx])
                 for dy in range(-2, 3) for dx in range(-2, 3))
        assert ok


def test_model_learns_toy_data(tiny_cfg, toy_mnist):
    tiny_cfg["train"]["epochs"] = 8
    tiny_cfg["optim"]["lr"] = 0.1
    cfg, model = _setup(tiny_cfg)
    hist = train.fit(model, *toy_mnist, cfg.train, cfg.optim, cfg.seed, torch.device("cpu"))
    assert [r["epoch"] for r in hist] == list(range(1, 9))
    assert hist[-1]["test_acc"] > 0.9 and not model.training


def test_same_seed_same_result(tiny_cfg, toy_mnist):
    runs = []
    for _ in range(2):
        cfg, model = _setup(tiny_cfg)
        train.fit(model, *toy_mnist, cfg.train, cfg.optim, cfg.seed, torch.device("cpu"))
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


class Killed(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(tiny_cfg, toy_mnist, tmp_path):
    cfg, model = _setup(tiny_cfg)
    ref = train.fit(model, *toy_mnist, cfg.train, cfg.optim, cfg.seed, torch.device("cpu"))
    ref_state = model.state_dict()

    # Second run: die in the middle of epoch 2, after epoch 1's checkpoint was written.
    ckpt = tmp_path / "run.pt"
    calls = {"n": 0}
    steps = -(-len(toy_mnist[0]) // cfg.train.batch_size)

    def dying(m, x, y):
        calls["n"] += 1
        if calls["n"] == steps + 3:
            raise Killed
        return F.cross_entropy(m(x), y)

    cfg, model = _setup(tiny_cfg)
    with pytest.raises(Killed):
        train.fit(model, *toy_mnist, cfg.train, cfg.optim, cfg.seed, torch.device("cpu"), ckpt, "k", dying)
    assert ckpt.is_file() and not list(tmp_path.glob(".*.tmp"))  # nothing half-written

    cfg, model = _setup(tiny_cfg)  # a fresh process would rebuild the model from scratch
    resumed = train.fit(model, *toy_mnist, cfg.train, cfg.optim, cfg.seed, torch.device("cpu"), ckpt, "k")
    assert all(torch.equal(ref_state[k], model.state_dict()[k]) for k in ref_state)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed) == strip(ref)


def test_checkpoint_of_another_config_is_not_resumed(tiny_cfg, toy_mnist, tmp_path):
    cfg, model = _setup(tiny_cfg)
    ckpt = tmp_path / "run.pt"
    train.fit(model, *toy_mnist, cfg.train, cfg.optim, cfg.seed, torch.device("cpu"), ckpt, "config-A")
    cfg, model = _setup(tiny_cfg)
    hist = train.fit(model, *toy_mnist, cfg.train, cfg.optim, cfg.seed, torch.device("cpu"), ckpt, "config-B")
    assert len(hist) == cfg.train.epochs  # trained from epoch 1, not resumed


def test_pick_device():
    assert train.pick_device("cpu").type == "cpu"
    assert train.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
