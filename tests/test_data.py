"""Data checks: canonical hashes accept the real arrays and reject a tampered one; damaged files fail loudly."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from advrep import data


@pytest.fixture(scope="module")
def cifar(mirror):
    with np.load(mirror / "cifar10.npz") as z:
        return {k: z[k] for k in z.files}


def test_canonical_cifar_arrays_verify(cifar):
    data.verify("cifar10", cifar, "mirror")  # raises if any hash differs


def test_tampered_array_fails_with_key_and_expected_hash(cifar):
    bad = dict(cifar)
    bad["x_test"] = cifar["x_test"].copy()
    bad["x_test"][123, 4, 5, 0] ^= 1  # one bit of one pixel
    with pytest.raises(data.DataError) as e:
        data.verify("cifar10", bad, "somefile.npz")
    msg = str(e.value)
    assert "somefile.npz" in msg and "x_test" in msg and data.CANONICAL["cifar10"]["x_test"][1] in msg


def test_wrong_shape_or_dtype_fails(cifar):
    bad = dict(cifar, y_train=cifar["y_train"].astype(np.int64))
    with pytest.raises(data.DataError, match="y_train.*expected uint8"):
        data.verify("cifar10", bad, "f")


def _fake_mirror(mirror: Path, tmp: Path) -> Path:
    (tmp / "MNIST" / "raw").mkdir(parents=True)
    for f in (mirror / "MNIST" / "raw").iterdir():
        (tmp / "MNIST" / "raw" / f.name).symlink_to(f)
    (tmp / "cifar10.npz").symlink_to(mirror / "cifar10.npz")
    return tmp


def test_mnist_from_mirror_through_torchvision_matches_canonical(mirror, tmp_path):
    arrays = data.fetch("mnist", mirror)
    assert arrays["x_train"].shape == (60000, 28, 28) and arrays["y_test"].dtype == np.uint8
    assert data.sha256(arrays["x_test"]) == data.CANONICAL["mnist"]["x_test"][1]


def test_damaged_mnist_file_names_file_and_md5(mirror, tmp_path):
    m = _fake_mirror(mirror, tmp_path / "m")
    target = m / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    blob = bytearray(target.read_bytes())
    target.unlink()
    blob[100] ^= 0xFF
    target.write_bytes(bytes(blob))
    with pytest.raises(data.DataError) as e:
        data.fetch("mnist", m)
    assert "t10k-labels-idx1-ubyte.gz" in str(e.value) and "ec29112dd5afa0611ce80d1b7f02629c" in str(e.value)


def test_missing_mnist_file_is_named(mirror, tmp_path):
    m = _fake_mirror(mirror, tmp_path / "m")
    (m / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz: file missing"):
        data.fetch("mnist", m)


def test_truncated_cifar_npz_fails(mirror, tmp_path):
    m = _fake_mirror(mirror, tmp_path / "m")
    (m / "cifar10.npz").unlink()
    with open(mirror / "cifar10.npz", "rb") as f:
        (m / "cifar10.npz").write_bytes(f.read(1_000_000))
    with pytest.raises(data.DataError, match="cifar10.npz"):
        data.fetch("cifar10", m)


def test_mirror_env_must_be_a_directory(monkeypatch, tmp_path):
    monkeypatch.setenv(data.MIRROR_ENV, str(tmp_path / "nope"))
    with pytest.raises(data.DataError, match="ADVREP_DATA_MIRROR.*not a directory"):
        data.mirror_from_env()


def test_load_gives_nchw_floats_in_unit_range(mirror, tmp_path):
    path = tmp_path / "cifar10.npz"
    shutil.copyfile(mirror / "cifar10.npz", path)
    s = data.load(path, "test", limit=50)
    assert s.x.shape == (50, 3, 32, 32) and s.x.dtype.is_floating_point
    assert 0.0 <= s.x.min() and s.x.max() <= 1.0 and s.x.max() > 0.9
    assert s.y.tolist()[:3] == [3, 8, 8]  # cat, ship, ship: the canonical first test images


def test_load_refuses_a_tampered_fetched_file(mirror, tmp_path):
    with np.load(mirror / "cifar10.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["y_test"] = arrays["y_test"].copy()
    arrays["y_test"][0] = (arrays["y_test"][0] + 1) % 10
    np.savez(tmp_path / "cifar10.npz", **arrays)
    with pytest.raises(data.DataError, match="y_test"):
        data.load(tmp_path / "cifar10.npz", "test")


def test_subset_is_seeded_and_keeps_indices():
    s = data.Split(*(lambda x: (x, x.long() % 10, x.long()))(__import__("torch").arange(100.0)))
    a, b = data.subset(s, 10, seed=3), data.subset(s, 10, seed=3)
    assert a.index.tolist() == b.index.tolist() and len(set(a.index.tolist())) == 10
    assert (a.y == a.index % 10).all()


def test_other_labels_never_equal_the_true_label():
    y = torch.arange(10).repeat(100)
    t = data.other_labels(y, seed=0)
    assert (t != y).all() and len(t.unique()) == 10
