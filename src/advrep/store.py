"""Writing results safely: atomic file writes, JSON/CSV/npz helpers, provenance, logging.

Every output goes through `atomic`, which writes to a temporary file beside the target and renames it into place,
so a killed stage never leaves a half-written file behind for DVC or a reader to trust.
"""
from __future__ import annotations

import contextlib
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
