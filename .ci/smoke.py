"""Run the smoke profile end to end in a scratch clone and compare its metrics with the committed baseline.

    python .ci/smoke.py check      # CI: print `dvc metrics diff`, fail when a metric moves beyond .ci/tolerance.yaml
    python .ci/smoke.py baseline   # after a change that moves results on purpose: rewrite .ci/smoke-baseline/
    python .ci/smoke.py noise      # re-measure the machine noise the tolerance must absorb (.ci/noise/)
    python .ci/smoke.py check --keep DIR   # ... and leave the scratch clone in DIR (CI's tests reuse its run)

The scratch clone is a copy of this working tree (tracked files and untracked ones git does not ignore) in a
temporary folder, committed as its own git repo. There params.yaml is replaced by profiles/smoke.yaml and the
baseline metrics are committed in place of the default ones, so `dvc metrics diff HEAD` shows every move.

Whether a move fails is decided by `judge`, from what each metric measures (see .ci/tolerance.yaml): an accuracy on
n images may move by a multiple of the standard error of a difference of two such accuracies; a count must not
move; other numbers by a relative amount. A metric's n is the number `n` stored beside it in its metrics file, at
its own level or the nearest one above.
"""
from __future__ import annotations

import fnmatch
import json
import math
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
NOISE = ROOT / ".ci" / "noise"
TOLERANCE = ROOT / ".ci" / "tolerance.yaml"


def sh(cmd: list[str], cwd: Path, env: dict | None = None, capture: bool = False) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=capture)
    if res.returncode != 0:
        if capture:
            sys.stderr.write(res.stdout + res.stderr)
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(cmd)}")
    return res.stdout if capture else ""


GIT = ["git", "-c", "user.name=advrep-ci", "-c", "user.email=ci@advrep.invalid", "-c", "commit.gpgsign=false"]


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
    sh(["git", "init", "-q"], dst)
    sh(["git", "add", "-A"], dst)
    sh([*GIT, "commit", "-q", "-m", f"scratch clone, {profile or 'default'} profile"], dst)
    return dst


def env_for(scratch: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # `python` and `dvc` from this venv
    env["PYTHONPATH"] = str(scratch / "src")  # the scratch copy's library, not the editable install's
    env["DVC_NO_ANALYTICS"] = "1"
    env["ADVREP_IMPORTS"] = str(scratch / ".imports")  # each stage records what it imported (tests/test_pipeline)
    mirror = ROOT.parent / "shared" / "datasets"
    if "ADVREP_DATA_MIRROR" not in env and (mirror / "cifar10.npz").is_file():
        env["ADVREP_DATA_MIRROR"] = str(mirror)
    return env


def repro(scratch: Path, env: dict | None = None) -> float:
    t0 = time.time()
    sh([str(Path(sys.executable).parent / "dvc"), "repro"], scratch, env or env_for(scratch))
    return time.time() - t0


def commit_baseline(scratch: Path) -> None:
    for f in BASELINE.glob("*.json"):
        shutil.copyfile(f, scratch / "reports" / "metrics" / f.name)
    sh(["git", "add", "-A"], scratch)
    sh([*GIT, "commit", "-q", "--allow-empty", "-m", "smoke baseline metrics"], scratch)


# ---------------------------------------------------------------------------------------------------------------
# Judging moves


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def n_of(name: str, flat: dict[str, object]) -> int | None:
    """The `n` stored at `name`'s level or the nearest level above it, if any."""
    parts = name.split(".")[:-1]
    for i in range(len(parts), -1, -1):
        v = flat.get(".".join([*parts[:i], "n"]))
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def qualified(path: str, name: str) -> str:
    """What tolerance patterns match: 'reports/metrics/sat.json:pairs' (the bare name without a path)."""
    return f"{path}:{name}" if path else name


def relative(old: float, new: float, r: dict, why: str = "") -> tuple[float, str]:
    return r["abs"] + r["rel"] * max(abs(old), abs(new)), f"{why}rel {r['rel']} + abs {r['abs']}"


def rule(name: str, tol: dict, path: str = "") -> str:
    leaf = name.split(".")[-1]
    full = qualified(path, name)
    if leaf.endswith(tuple(tol.get("ignore_suffixes", []))):
        return "ignore"
    if leaf in tol.get("exact", []) or any(fnmatch.fnmatch(full, p) for p in tol.get("exact_patterns", [])):
        return "exact"
    return "number"


def limit(name: str, old: float, new: float, flat: dict, tol: dict, path: str = "") -> tuple[float, str]:
    """How far this metric may move, and why. A named pattern of `relative` comes first (interval widths, counts
    of flags), then the accuracy rule where an n is known (stored beside it, or `n_by_pattern`)."""
    full = qualified(path, name)
    for pat, r in tol.get("relative", {}).items():
        if pat != "default" and fnmatch.fnmatch(full, pat):
            return relative(old, new, r, f"{pat}: ")
    n = n_of(name, flat) or next((v for pat, v in tol.get("n_by_pattern", {}).items() if fnmatch.fnmatch(full, pat)),
                                 None)
    acc = tol["accuracy"]
    if n is not None and 0 <= old <= 1 and 0 <= new <= 1:
        p = min(max((old + new) / 2, 1 / n), 1 - 1 / n)
        se = math.sqrt(2 * p * (1 - p) / n)  # s.e. of the difference of two accuracies on n images
        return max(acc["floor"], acc["z"] * se), f"{acc['z']} s.e. on n={n}"
    return relative(old, new, tol["relative"]["default"])


def judge(old: dict[str, dict], new: dict[str, dict], tol: dict) -> list[str]:
    """Failures (one line each) of `new` metrics against `old`, both {file: metrics dict}."""
    failures = []
    for path in sorted(set(old) | set(new)):
        if path not in new:
            failures.append(f"{path} disappeared")
            continue
        if path not in old:
            failures.append(f"{path} is new: not in the baseline (run `make smoke-baseline`)")
            continue
        if Path(path).name in tol.get("ignore_files", []):
            continue
        fo, fn = flatten(old[path]), flatten(new[path])
        for name in sorted(set(fo) | set(fn)):
            how = rule(name, tol, path)
            if how == "ignore":
                continue
            a, b = fo.get(name), fn.get(name)
            if name not in fo:
                failures.append(f"{path}:{name} is new ({b}): not in the baseline (run `make smoke-baseline`)")
            elif name not in fn:
                failures.append(f"{path}:{name} disappeared (baseline {a})")
            elif how == "exact" or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
                if a != b:
                    failures.append(f"{path}:{name} changed {a!r} -> {b!r} (must not move)")
            else:
                lim, why = limit(name, a, b, fo, tol, path)
                if abs(b - a) > lim:
                    failures.append(f"{path}:{name} moved {a:.4g} -> {b:.4g} (|change| {abs(b - a):.3g} > {lim:.3g}"
                                    f", {why})")
    return failures


def read_metrics(folder: Path) -> dict[str, dict]:
    return {f"reports/metrics/{f.name}": json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))}


def compare(scratch: Path) -> int:
    dvc = str(Path(sys.executable).parent / "dvc")
    print(sh([dvc, "metrics", "diff", "HEAD", "--all", "--md"], scratch, env_for(scratch), capture=True))
    tol = yaml.safe_load(TOLERANCE.read_text())
    failures = judge(read_metrics(BASELINE), read_metrics(scratch / "reports" / "metrics"), tol)
    if failures:
        print("Smoke metrics moved beyond tolerance:\n  " + "\n  ".join(failures))
        print("If the change is intended, run `make smoke-baseline` and commit .ci/smoke-baseline/ with it.")
        return 1
    print(f"Smoke metrics within tolerance ({TOLERANCE.relative_to(ROOT)}).")
    return 0


def noise_report(a: dict[str, dict], b: dict[str, dict], tol: dict) -> str:
    """How far each accuracy moved between two runs, in units of its standard error (what `noise` prints)."""
    rows = []
    for path in sorted(set(a) & set(b)):
        fa, fb = flatten(a[path]), flatten(b[path])
        for name in sorted(set(fa) & set(fb)):
            x, y = fa[name], fb[name]
            n = n_of(name, fa)
            if rule(name, tol) == "number" and n and isinstance(x, (int, float)) and 0 <= x <= 1 and 0 <= y <= 1:
                p = min(max((x + y) / 2, 1 / n), 1 - 1 / n)
                rows.append((abs(y - x) / math.sqrt(2 * p * (1 - p) / n), abs(y - x), path, name, n))
    rows.sort(reverse=True)
    moved = sum(r[1] > 0 for r in rows)
    head = (f"{len(rows)} accuracies, {moved} moved; largest moves in standard errors "
            f"(max {rows[0][0]:.2f} s.e., {100 * max(r[1] for r in rows):.1f} points):" if rows else "no accuracies")
    return "\n".join([head] + [f"  {z:5.2f} s.e.  {100 * d:5.1f} pts  n={n:<5} {p}:{m}" for z, d, p, m, n in rows[:15]])


def main() -> int:
    args = sys.argv[1:]
    mode = args[0] if args else "check"
    keep = Path(args[args.index("--keep") + 1]).resolve() if "--keep" in args else None
    if mode not in ("check", "baseline", "noise"):
        raise SystemExit(f"usage: {sys.argv[0]} check|baseline|noise [--keep DIR]")
    with tempfile.TemporaryDirectory(prefix="advrep-smoke-") as tmp:
        if keep is not None:
            shutil.rmtree(keep, ignore_errors=True)
            keep.mkdir(parents=True)
        scratch = scratch_clone(keep or Path(tmp))
        if mode == "check":
            if not any(BASELINE.glob("*.json")):
                raise SystemExit(f"no baseline in {BASELINE}: run `make smoke-baseline` first")
            commit_baseline(scratch)
        env = env_for(scratch)
        if mode == "noise":  # the same code and params on other kernels' reduction order: one thread, not two
            env["OMP_NUM_THREADS"] = "1"
        seconds = repro(scratch, env)
        (scratch / ".smoke_seconds").write_text(f"{seconds:.1f}\n")
        print(f"smoke pipeline: dvc repro took {seconds:.0f} s")
        if mode in ("baseline", "noise"):
            dst = BASELINE if mode == "baseline" else NOISE / "threads1"
            dst.mkdir(parents=True, exist_ok=True)
            for f in dst.glob("*.json"):
                f.unlink()
            for f in (scratch / "reports" / "metrics").glob("*.json"):
                shutil.copyfile(f, dst / f.name)
            print(f"metrics written to {dst.relative_to(ROOT)}: {sorted(p.name for p in dst.glob('*'))}")
            if mode == "noise":
                tol = yaml.safe_load(TOLERANCE.read_text())
                print(noise_report(read_metrics(BASELINE), read_metrics(dst), tol))
            return 0
        return compare(scratch)


if __name__ == "__main__":
    sys.exit(main())
