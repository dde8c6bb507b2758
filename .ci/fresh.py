"""Are the committed results current? Fails when `dvc status` finds a stage whose code or params deps changed since
dvc.lock was written, so a change that moves results cannot land without its re-run (`dvc repro`, then commit
dvc.lock and reports/).

    python .ci/fresh.py            # in the repo root; exit 1 names the stale stages and what changed

Missing data (a fresh clone has no DVC cache: data/ outputs and the deps made from them are "deleted") is expected
and ignored; only deps that git tracks (code, params.yaml, requirements.lock) count.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stale(status: dict) -> dict[str, list[str]]:
    """Per stage, the changed code and params deps in `dvc status --json` output."""
    out: dict[str, list[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            for path, what in entry.get("changed deps", {}).items():
                if isinstance(what, dict):  # params.yaml: {section: "modified" | "new" | "deleted"}
                    out.setdefault(stage, []).extend(f"{path}:{k} {v}" for k, v in what.items())
                elif what != "deleted" and not path.startswith(("data/", "reports/")):
                    out.setdefault(stage, []).append(f"{path} {what}")
    return out


def main() -> int:
    dvc = str(Path(sys.executable).parent / "dvc")
    res = subprocess.run([dvc, "status", "--json"], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        return 1
    bad = stale(json.loads(res.stdout or "{}"))
    if bad:
        print("The committed results are stale: these stages' code or params changed since dvc.lock was written.\n"
              "Run `dvc repro` on the default params and commit dvc.lock and reports/ with the change.")
        for stage, what in bad.items():
            print(f"  {stage}: " + ", ".join(what))
        return 1
    print("Committed results are current: no stage's code or params changed since dvc.lock.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
