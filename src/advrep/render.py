"""Report plumbing: what every report section uses to read results and write markdown and figures.

A section is a function `section(ctx) -> markdown` in its experiment's module; it reads its stage's metrics, tables,
plots and run records through `Context`, formats numbers with `pct` / `pm`, builds tables with `table`, and saves
figures with `ctx.figure`. Nothing here knows any experiment.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .store import atomic  # noqa: E402

PAPER_RUN = ("`git checkout -b paper && cp profiles/paper.yaml params.yaml && make repro` on a GPU machine, then "
             "`dvc push` to share the models")


@dataclass
class Context:
    root: Path  # reports/
    dpi: int
    anchors: dict

    def metrics(self, name: str) -> dict | None:
        p = self.root / "metrics" / f"{name}.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def plot(self, name: str) -> pd.DataFrame | None:
        p = self.root / "plots" / f"{name}.csv"
        return pd.read_csv(p) if p.is_file() else None

    def table(self, name: str) -> pd.DataFrame | None:
        p = self.root / "tables" / f"{name}.csv"
        return pd.read_csv(p) if p.is_file() else None

    def runs(self) -> dict[str, dict]:
        return {p.stem: json.loads(p.read_text()) for p in sorted((self.root / "runs").glob("*.json"))}

    def figure(self, fig, name: str) -> str:
        path = self.root / "figures" / f"{name}.png"
        with atomic(path, "wb") as f:
            fig.savefig(f, format="png", dpi=self.dpi, bbox_inches="tight")
        plt.close(fig)
        return f"figures/{name}.png"


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or x != x else f"{100 * x:.{digits}f}%"  # x != x: NaN


def pm(mean: float, std: float, digits: int = 1) -> str:
    """mean ± spread in percent."""
    return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}%"


def table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def eps_label(e: float) -> str:
    """8/255-style labels for the usual CIFAR grid, plain numbers otherwise."""
    k = e * 255
    return f"{round(k)}/255" if 0 < e < 1 and abs(k - round(k)) < 1e-3 and round(k) <= 16 else f"{e:g}"
