"""Writing results safely: atomic file writes, JSON/CSV/npz helpers, the one key function, provenance, logging.

Every output goes through `atomic`, which writes to a temporary file beside the target and renames it into place,
so a killed stage never leaves a half-written file behind for DVC or a reader to trust.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside `path`; on success rename it to `path`, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _jsonable(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "model_dump"):
        return o.model_dump()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_json(path: str | Path, obj: Any) -> None:
    with atomic(path, "w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)
        f.write("\n")


def load_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic(path, "wb") as f:
        np.savez(f, **arrays)


def save_csv(path: str | Path, frame) -> None:
    """Write a pandas DataFrame as CSV (DVC plots read these)."""
    with atomic(path, "w") as f:
        frame.to_csv(f, index=False, float_format="%.6g")


def key(*parts: Any) -> str:
    """A short hash of everything that defines a piece of work (configs, seeds, data hashes, code): the one key
    under which anything cached or resumed is stored, so work made with other inputs is never reused."""
    blob = json.dumps(parts, sort_keys=True, default=_jsonable).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def code_hash(*modules: Any) -> str:
    """A hash of the source of the given modules (module objects or dotted names; a package counts with every
    module in it): the code ingredient of a key, so a cached result is not reused after the code that made it
    changed."""
    import importlib

    h = hashlib.sha256()
    for m in modules:
        m = importlib.import_module(m) if isinstance(m, str) else m
        path = Path(m.__file__)
        files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
        for f in files:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def tensor_hash(*tensors: Any) -> str:
    """A hash of tensors' (or arrays') bytes, shapes and dtypes: the data ingredient of a key."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        a = t.detach().cpu().contiguous().numpy() if hasattr(t, "detach") else np.ascontiguousarray(t)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


_WRITES = 0


def checkpoint_written(path: str | Path) -> None:
    """Called after every checkpoint a stage writes. With $ADVREP_KILL_AFTER=N the process dies (exit 137, as a
    SIGKILL leaves it) right after its N-th checkpoint: the kill-and-resume tests stop a stage at a checkpoint
    boundary this way instead of racing a timer."""
    global _WRITES
    _WRITES += 1
    limit = os.environ.get("ADVREP_KILL_AFTER")
    if limit and _WRITES >= int(limit):
        logging.getLogger("advrep").warning(f"ADVREP_KILL_AFTER={limit}: killed after writing {path}")
        os._exit(137)


class Resume:
    """Finished units of a stage's work (one training run, one chunk of a generated set), kept on disk under
    data/checkpoints/<stage>/<key>.pt until the stage succeeds. A stage killed half-way and started again loads
    the units whose key matches and computes only the rest; `clear` removes the folder once the stage's outputs
    are written. Values are plain data: tensors, numbers, strings, and lists / dicts of them."""

    def __init__(self, stage: str, root: str | Path = "data/checkpoints"):
        self.dir = Path(root) / stage

    def path(self, k: str) -> Path:
        return self.dir / f"{k}.pt"

    def get(self, k: str) -> Any | None:
        import torch

        p = self.path(k)
        return torch.load(p, map_location="cpu", weights_only=True) if p.is_file() else None

    def put(self, k: str, value: Any) -> Any:
        import torch

        with atomic(self.path(k)) as f:
            torch.save(value, f)
        checkpoint_written(self.path(k))
        return value

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def git_revision() -> str:
    """HEAD's commit, with '+changes' when the code (src/, stages/, dvc.yaml) differs from it; 'unknown' outside git.

    Results files (reports/, dvc.lock) are ignored on purpose: every pipeline run rewrites them, so counting them
    would mark every later stage of a run as dirty.
    """
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return "unknown"
        changed = git("status", "--porcelain", "--", "src", "stages", "dvc.yaml").stdout.strip()
        return head.stdout.strip() + ("+changes" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(device: str | None = None) -> dict[str, Any]:
    """Where and with what a result was made; stored beside every output."""
    import torch

    return {
        "git_revision": git_revision(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device or "cpu",
        "device_name": torch.cuda.get_device_name(0) if device and device.startswith("cuda") else platform.processor()
        or platform.machine(),
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "argv": sys.argv,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def finish(stage: str, params: Any, started: float, device: str, out: str | Path | None = None,
           **extra: Any) -> dict[str, Any]:
    """Write a stage's run record (seed, resolved params, wall time, provenance, extras) to reports/runs/<stage>.json
    and, when `out` is given, beside the stage's outputs as out/run.json. Returns the record."""
    record = {"stage": stage, "seed": getattr(params, "seed", None), **extra, "params": params,
              "wall_seconds": time.time() - started, "provenance": provenance(device)}
    save_json(Path("reports/runs") / f"{stage}.json", record)
    if out is not None:
        save_json(Path(out) / "run.json", record)
    return record


def publish(stage: str, params: Any, started: float, device: str, *, metrics: dict | None = None,
            tables: dict | None = None, plots: dict | None = None, out: str | Path | None = None,
            record_metrics: bool = False, **extra: Any) -> dict[str, Any]:
    """A stage's epilogue: reports/metrics/<stage>.json, reports/tables/<name>.csv and reports/plots/<name>.csv
    (DataFrames), then the run record (`finish`; with the metrics in it when `record_metrics`). Returns the
    record."""
    if metrics is not None:
        save_json(Path("reports/metrics") / f"{stage}.json", metrics)
    for folder, frames in (("tables", tables or {}), ("plots", plots or {})):
        for name, frame in frames.items():
            save_csv(Path("reports") / folder / f"{name}.csv", frame)
    if record_metrics:
        extra = {"metrics": metrics, **extra}
    record = finish(stage, params, started, device, out, **extra)
    logger(stage).info(f"{stage}: done in {record['wall_seconds']:.0f}s")
    return record


def logger(name: str) -> logging.Logger:
    """A logger that prints `HH:MM:SS stage: message` to stderr (DVC shows it as the stage runs)."""
    log = logging.getLogger(name)
    if not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log
