"""Shared fixtures: the repo root, the offline dataset mirror, and a small CPU config for fast training tests."""
import copy
import os
from pathlib import Path

import pytest
import torch

from advrep.data import Split

ROOT = Path(__file__).resolve().parents[1]


def find_mirror() -> Path | None:
    env = os.environ.get("ADVREP_DATA_MIRROR")
    for cand in (env, ROOT.parent / "shared" / "datasets"):
        if cand and (Path(cand) / "cifar10.npz").is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def mirror() -> Path:
    m = find_mirror()
    if m is None:
        pytest.skip("no offline dataset mirror (set ADVREP_DATA_MIRROR or put ../shared/datasets beside the repo)")
    return m


TINY_TRAIN = {
    "seed": 0,
    "device": "cpu",
    "data": {"dataset": "mnist", "train_limit": 256, "test_limit": 128},
    "model": {"arch": "mnist_cnn", "activation": "relu", "widths": [4, 8, 16]},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "schedule": "onecycle", "warmup": 0.2},
    "train": {"epochs": 3, "batch_size": 32, "channels_last": False},
}


@pytest.fixture
def tiny_cfg() -> dict:
    """A small CPU config for a training section (a fresh copy each test may edit)."""
    return copy.deepcopy(TINY_TRAIN)


@pytest.fixture(scope="session")
def toy_mnist() -> tuple[Split, Split]:
    """Synthetic MNIST-shaped data with a learnable signal (class k brightens row band k); no files needed."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        y = torch.randint(0, 10, (n,), generator=g)
        x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
        for k in range(10):
            x[y == k, :, 2 * k + 4:2 * k + 6, :] += 0.6
        return Split(x.clamp(0, 1), y, torch.arange(n))

    return make(256), make(128)
