"""Datasets: fetch MNIST and CIFAR-10 as verified uint8 arrays, and load them as float tensors in [0, 1].

Two routes lead to the same arrays. Online, torchvision's own `MNIST` / `CIFAR10` classes download and md5-check
the canonical files. Offline, the directory named by the environment variable `ADVREP_DATA_MIRROR` (laid out like
`../shared/datasets`) supplies the four MNIST .gz files, still read through torchvision's `MNIST` class, and a
lossless `cifar10.npz`. Whatever the route, every array is checked against the canonical content hash below before
anything is written, so a damaged or foreign file stops the fetch with an error naming it and the expected hash.
The route is deliberately not a param: it cannot change the output.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MIRROR_ENV = "ADVREP_DATA_MIRROR"
DATASETS = ("mnist", "cifar10")

# sha256 of each array's raw C-order bytes (uint8). CIFAR-10 from ../shared/datasets/SOURCES.md; MNIST computed once
# from the four canonical .gz files (md5-checked by torchvision) as loaded by torchvision.datasets.MNIST.
CANONICAL = {
    "mnist": {
        "x_train": ((60000, 28, 28), "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757"),
        "y_train": ((60000,), "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"),
        "x_test": ((10000, 28, 28), "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161"),
        "y_test": ((10000,), "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"),
    },
    "cifar10": {
        "x_train": ((50000, 32, 32, 3), "47af8b02cfcfb6cdf3dbbd1969ad7f1b70f4413f6f80f437b020ee4e5bc8304a"),
        "y_train": ((50000,), "2b7cd2f24487317614016b72ffd53071c3062f592f0eb300c18a770d41ae1253"),
        "x_test": ((10000, 32, 32, 3), "f9b1e2130bab680db56eb06d886f7f1ad0f1183907ceff4659d1735c890f5b04"),
        "y_test": ((10000,), "cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5"),
    },
}

# (training, test) examples of each dataset
SIZES = {name: (arrays["y_train"][0][0], arrays["y_test"][0][0]) for name, arrays in CANONICAL.items()}

# Per-channel statistics of the training sets, used by the normalisation layer that lives inside every model.
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
CLASSES = {
    "mnist": tuple(str(i) for i in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


class DataError(RuntimeError):
    """An input file (a dataset, a trained model, a generated set) is missing, damaged or not the expected one."""


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(name: str, arrays: dict[str, np.ndarray], source: str, keys: tuple[str, ...] | None = None) -> None:
    """Raise DataError unless `arrays` are exactly the canonical arrays of dataset `name` (only `keys`, if given)."""
    for key, (shape, digest) in CANONICAL[name].items():
        if keys is not None and key not in keys:
            continue
        if key not in arrays:
            raise DataError(f"{source}: array '{key}' is missing (expected keys {sorted(CANONICAL[name])})")
        a = arrays[key]
        if a.dtype != np.uint8 or tuple(a.shape) != shape:
            raise DataError(f"{source}: array '{key}' is {a.dtype}{list(a.shape)}, expected uint8{list(shape)}")
        got = sha256(a)
        if got != digest:
            raise DataError(f"{source}: array '{key}' has sha256 {got}, expected {digest} (damaged or not canonical)")


def _mnist_from_root(root: Path) -> dict[str, np.ndarray]:
    from torchvision.datasets import MNIST

    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = MNIST(str(root), train=train, download=True)
        out[f"x_{split}"] = ds.data.numpy().astype(np.uint8)
        out[f"y_{split}"] = ds.targets.numpy().astype(np.uint8)
    return out


def fetch_mnist(mirror: Path | None, workdir: Path) -> dict[str, np.ndarray]:
    """MNIST arrays through torchvision's MNIST class, from `mirror`/MNIST/raw when given, else the internet."""
    from torchvision.datasets import MNIST

    root = Path(workdir) / "mnist"
    if mirror is not None:
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for filename, md5 in MNIST.resources:
            src = Path(mirror) / "MNIST" / "raw" / filename
            if not src.is_file():
                raise DataError(f"{src}: file missing from the offline mirror ({MIRROR_ENV}={mirror})")
            got = md5_file(src)
            if got != md5:  # checked here so that torchvision never falls back to the network
                raise DataError(f"{src}: md5 {got}, expected {md5} (damaged or not the canonical file)")
            shutil.copyfile(src, raw / filename)
    arrays = _mnist_from_root(root)
    verify("mnist", arrays, str(mirror / "MNIST" / "raw") if mirror else "torchvision MNIST download")
    return arrays


def fetch_cifar10(mirror: Path | None, workdir: Path) -> dict[str, np.ndarray]:
    """CIFAR-10 arrays from `mirror`/cifar10.npz when given, else torchvision's CIFAR10 download."""
    if mirror is not None:
        path = Path(mirror) / "cifar10.npz"
        if not path.is_file():
            raise DataError(f"{path}: file missing from the offline mirror ({MIRROR_ENV}={mirror})")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # a truncated or foreign file: say which file, not a zipfile traceback
            raise DataError(f"{path}: cannot be read as an npz archive ({e})") from e
        verify("cifar10", arrays, str(path))
        return arrays
    from torchvision.datasets import CIFAR10

    arrays = {}
    for split, train in (("train", True), ("test", False)):
        ds = CIFAR10(str(Path(workdir) / "cifar10"), train=train, download=True)
        arrays[f"x_{split}"] = np.asarray(ds.data, dtype=np.uint8)
        arrays[f"y_{split}"] = np.asarray(ds.targets, dtype=np.uint8)
    verify("cifar10", arrays, "torchvision CIFAR10 download")
    return arrays


def mirror_from_env() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        raise DataError(f"{MIRROR_ENV}={value}: not a directory (expected a folder laid out like ../shared/datasets)")
    return path


def fetch(name: str, mirror: Path | None = None) -> dict[str, np.ndarray]:
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}', expected one of {DATASETS}")
    with tempfile.TemporaryDirectory(prefix=f"advrep-{name}-") as tmp:
        return (fetch_mnist if name == "mnist" else fetch_cifar10)(mirror, Path(tmp))


# ---------------------------------------------------------------------------------------------------------------
# Loading for training and attacks


@dataclass
class Split:
    """Images as float32 NCHW in [0, 1] and int64 labels; `index` are positions in the canonical array."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


def load(path: str | Path, split: str, limit: int | None = None, verify_hash: bool = True) -> Split:
    """Load `split` ('train' or 'test') of a fetched npz, optionally the first `limit` examples. Loaded and
    verified once per process (a stage's units share it), keyed by the file's size and modification time."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found (run the fetch stage: dvc repro fetch)")
    st = path.stat()
    return _load(str(path.resolve()), st.st_size, st.st_mtime_ns, split, limit, verify_hash)


@functools.lru_cache(maxsize=8)
def _load(path_s: str, size: int, mtime_ns: int, split: str, limit: int | None, verify_hash: bool) -> Split:
    path = Path(path_s)
    name = path.stem
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z[f"x_{split}"], z[f"y_{split}"]
    except Exception as e:  # zipfile.BadZipFile, a CRC error, a truncated member, a missing array, ...
        raise DataError(f"{path}: damaged or not a dataset written by the fetch stage ({type(e).__name__}: {e}); "
                        "delete it and run `dvc repro fetch`") from None
    if verify_hash and name in CANONICAL:
        verify(name, {f"x_{split}": x, f"y_{split}": y}, str(path), keys=(f"x_{split}", f"y_{split}"))
    n = len(y) if limit is None else min(int(limit), len(y))
    x = torch.from_numpy(np.ascontiguousarray(x[:n]))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # MNIST NHW -> N1HW; CIFAR NHWC -> NCHW
    return Split(x.float().div_(255).contiguous(), torch.from_numpy(y[:n].astype(np.int64)), torch.arange(n))


def subset(s: Split, n: int | None, seed: int) -> Split:
    """A seeded random subset of `n` examples (all when n is None), keeping the canonical indices."""
    if n is None or n >= len(s):
        return s
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(s), generator=g)[:n].sort().values
    return Split(s.x[idx], s.y[idx], s.index[idx])


def other_labels(y: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded random label different from y, per example (uniform over the other nine classes)."""
    g = torch.Generator().manual_seed(seed)
    return (y + torch.randint(1, 10, y.shape, generator=g).to(y.device)) % 10
