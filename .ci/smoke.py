"""Run the smoke profile end to end in a scratch clone and compare its metrics with the committed baseline.

    python .ci/smoke.py check      # CI: fail when a metric moves beyond .ci/tolerance.yaml
    python .ci/smoke.py baseline   # after a change that moves results on purpose: rewrite .ci/smoke-baseline/

The scratch clone is a copy of this working tree (tracked files and untracked ones git does not ignore) in a
temporary folder, committed as its own git repo. There params.yaml is replaced by profiles/smoke.yaml and the
baseline metrics are committed in place of the default ones, so `dvc metrics diff HEAD` compares this run with
the baseline.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / ".ci" / "smoke-baseline"
TOLERANCE = ROOT / ".ci" / "tolerance.yaml"


def sh(cmd: list[str], cwd: Path, env: dict | None = None, capture: bool = False) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=capture)
    if res.returncode != 0:
        if capture:
            sys.stderr.write(res.stdout + res.stderr)
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(cmd)}")
    return res.stdout if capture else ""


def scratch_clone(dst: Path, profile: str | None = "smoke") -> Path:
    """Copy the working tree into `dst`, switch params.yaml to `profile`, commit; return dst."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    if profile:
        shutil.copyfile(dst / "profiles" / f"{profile}.yaml", dst / "params.yaml")
    git = ["git", "-c", "user.name=advrep-ci", "-c", "user.email=ci@advrep.invalid", "-c", "commit.gpgsign=false"]
    sh(["git", "init", "-q"], dst)
    sh(["git", "add", "-A"], dst)
    sh([*git, "commit", "-q", "-m", f"scratch clone, {profile or 'default'} profile"], dst)
    return dst


def env_for(scratch: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # `python` and `dvc` from this venv
    env["PYTHONPATH"] = str(scratch / "src")  # the scratch copy's library, not the editable install's
    env["DVC_NO_ANALYTICS"] = "1"
    mirror = ROOT.parent / "shared" / "datasets"
    if "ADVREP_DATA_MIRROR" not in env and (mirror / "cifar10.npz").is_file():
        env["ADVREP_DATA_MIRROR"] = str(mirror)
    return env


def repro(scratch: Path) -> float:
    t0 = time.time()
    sh([str(Path(sys.executable).parent / "dvc"), "repro"], scratch, env_for(scratch))
    return time.time() - t0


def commit_baseline(scratch: Path) -> None:
    for f in BASELINE.glob("*.json"):
        shutil.copyfile(f, scratch / "reports" / "metrics" / f.name)
    git = ["git", "-c", "user.name=advrep-ci", "-c", "user.email=ci@advrep.invalid", "-c", "commit.gpgsign=false"]
    sh(["git", "add", "-A"], scratch)
    sh([*git, "commit", "-q", "--allow-empty", "-m", "smoke baseline metrics"], scratch)


def compare(scratch: Path) -> int:
    dvc = str(Path(sys.executable).parent / "dvc")
    env = env_for(scratch)
    print(sh([dvc, "metrics", "diff", "HEAD", "--all", "--md"], scratch, env, capture=True))
    diff = json.loads(sh([dvc, "metrics", "diff", "HEAD", "--all", "--json"], scratch, env, capture=True) or "{}")
    tol = yaml.safe_load(TOLERANCE.read_text())
    failures = []
    for path, metrics in diff.items():
        for name, d in metrics.items():
            if name.split(".")[-1].endswith(tuple(tol.get("ignore_suffixes", []))):
                continue  # wall-clock timings: they measure the machine, not the results
            old, new = d.get("old"), d.get("new")
            limit = tol.get("metrics", {}).get(name, tol["default_abs"])
            if old is None:
                failures.append(f"{path}:{name} is new ({new}): not in the baseline (run `make smoke-baseline`)")
            elif new is None:
                failures.append(f"{path}:{name} disappeared (baseline {old})")
            elif not all(isinstance(v, (int, float)) for v in (old, new)):  # a label, e.g. a source model's path
                if old != new:
                    failures.append(f"{path}:{name} changed {old!r} -> {new!r}")
            elif abs(new - old) > limit:
                failures.append(f"{path}:{name} moved {old} -> {new} (|change| {abs(new - old):.4g} > {limit})")
    if failures:
        print("Smoke metrics moved beyond tolerance:\n  " + "\n  ".join(failures))
        print("If the change is intended, run `make smoke-baseline` and commit .ci/smoke-baseline/ with it.")
        return 1
    print(f"Smoke metrics within tolerance ({TOLERANCE.relative_to(ROOT)}).")
    return 0


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    if mode not in ("check", "baseline"):
        raise SystemExit(f"usage: {sys.argv[0]} check|baseline")
    with tempfile.TemporaryDirectory(prefix="advrep-smoke-") as tmp:
        scratch = scratch_clone(Path(tmp))
        if mode == "check":
            if not any(BASELINE.glob("*.json")):
                raise SystemExit(f"no baseline in {BASELINE}: run `make smoke-baseline` first")
            commit_baseline(scratch)
        seconds = repro(scratch)
        print(f"smoke pipeline: dvc repro took {seconds:.0f} s")
        if mode == "baseline":
            BASELINE.mkdir(parents=True, exist_ok=True)
            for f in BASELINE.glob("*.json"):
                f.unlink()
            for f in (scratch / "reports" / "metrics").glob("*.json"):
                shutil.copyfile(f, BASELINE / f.name)
            print(f"baseline written to {BASELINE.relative_to(ROOT)}: {sorted(p.name for p in BASELINE.glob('*'))}")
            return 0
        return compare(scratch)


if __name__ == "__main__":
    sys.exit(main())
