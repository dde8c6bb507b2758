"""Report plumbing: what every report section uses to read results and write markdown and figures.

A section is a function `section(ctx) -> markdown` in its experiment's module; it reads its stage's metrics, tables,
plots and run records through `Context`, formats numbers with `pct` / `pm`, builds tables with `table`, and saves
figures with `ctx.figure`. Nothing here knows any experiment.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
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

    drawn: dict = field(default_factory=dict)  # figure name -> overlapping text found when it was drawn

    def figure(self, fig, name: str) -> str:
        path = self.root / "figures" / f"{name}.png"
        with atomic(path, "wb") as f:
            fig.savefig(f, format="png", dpi=self.dpi, bbox_inches="tight")
        self.drawn[name] = overlaps(fig)
        plt.close(fig)
        return f"figures/{name}.png"


def overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of drawn, non-empty texts of a figure whose boxes overlap by more than a pixel each way (tick labels
    running into each other, a legend over a title or an axis label): what a reader cannot read."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    texts = list(fig.texts) + [t for lg in fig.legends for t in lg.get_texts() + [lg.get_title()]]
    if getattr(fig, "_suptitle", None) is not None:
        texts.append(fig._suptitle)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            texts += [t.label1 for t in axis._update_ticks() if t.label1.get_visible()]  # the ticks drawn
            texts.append(axis.label)
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts() + [ax.get_legend().get_title()]
    texts = list({id(t): t for t in texts}.values())  # the suptitle is among fig.texts too
    boxes = [(t, t.get_window_extent(r)) for t in texts if t.get_visible() and t.get_text().strip()]
    out = []
    for i, (a, ba) in enumerate(boxes):
        for b, bb in boxes[i + 1:]:
            w = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
            h = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
            if w > 1 and h > 1:
                out.append((a.get_text(), b.get_text()))
    return out


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or x != x else f"{100 * x:.{digits}f}%"  # x != x: NaN


def ci(mean: float | None, half: float | None, signed: bool = False, digits: int = 1) -> str:
    """A mean with the half-width of its 95% interval: '45.3% ± 1.2' for an accuracy, '+0.52 ± 0.81 pts' for a
    difference (signed). A single value (no interval) prints alone."""
    if mean is None or mean != mean:
        return "–"
    if signed:
        text = f"{100 * mean:+.{digits + 1}f}"
        return text + (f" ± {100 * half:.{digits + 1}f} pts" if half is not None and half == half else " pts")
    return f"{100 * mean:.{digits}f}%" + (f" ± {100 * half:.{digits}f}" if half is not None and half == half else "")


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


# ---------------------------------------------------------------------------------------------------------------
# Claims: the scoreboard's rows. Each experiment module's `claims(ctx)` returns its paper's headline claims.


@dataclass
class Claim:
    """One headline claim of a paper, its published number, ours with its interval, and the computed verdict."""

    paper: str  # "Szegedy et al. 2014"
    claim: str  # a few words
    published: float | None  # the paper's number (a fraction), from anchors.yaml
    ours: float | None  # ours (a fraction); None: not run
    lo: float | None = None  # our 95% interval
    hi: float | None = None
    n: str = ""  # what the interval is over: "n=1,000 images", "8 pairs"
    null: float | None = None  # the value that means "no effect" (chance, the clean error, zero gain)
    section: str = ""  # the report section's heading, for the link
    profile: str = ""  # the profile the number comes from
    signed: bool = False  # a difference (printed in points) rather than an accuracy
    bound: str = ""  # "above" / "below": the paper claims only that the value lies beyond `published`;
    # "not below": only that it is no less than `published` (a "no better than" claim: refuted by an interval
    # that lies wholly below it, met by any other)
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.bound and self.ours is not None and self.ours == self.ours:
            lo, hi = (self.ours if self.lo is None else self.lo), (self.ours if self.hi is None else self.hi)
            if self.bound == "not below":
                return "reproduces" if hi >= self.published else "does not reproduce"
            beyond = lo > self.published if self.bound == "above" else hi < self.published
            short = hi < self.published if self.bound == "above" else lo > self.published
            return "reproduces" if beyond else "does not reproduce" if short else "not resolved"
        return verdict(self.published, self.ours, self.lo, self.hi, self.null)


def wilson(p: float | None, n: int) -> tuple[float | None, float | None]:
    """The 95% Wilson interval of an accuracy p measured on n images."""
    if p is None or p != p or not n:
        return None, None
    from .stats import binomial_ci

    return binomial_ci(round(p * n), n)


def diff_interval(p1: float, p2: float, n1: int, n2: int) -> tuple[float, float]:
    """A normal 95% interval of p2 - p1 for two accuracies on independent sets of n1 and n2 images."""
    half = 1.96 * (p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) ** 0.5
    return p2 - p1 - half, p2 - p1 + half


def verdict(published, ours, lo, hi, null=None) -> str:
    """reproduces: the published number lies in our interval and the interval excludes `null` (or there is none);
    direction only: the interval excludes both, on the published number's side of `null`; not resolved: it holds
    both; does not reproduce: otherwise; not run: no number of ours."""
    if ours is None or ours != ours:
        return "not run"
    if published is None:
        return "not resolved"
    lo = ours if lo is None or lo != lo else lo
    hi = ours if hi is None or hi != hi else hi
    has_pub = lo <= published <= hi
    has_null = null is not None and lo <= null <= hi
    if has_pub and has_null:
        return "not resolved"
    if has_pub:
        return "reproduces"
    if null is not None and not has_null and (published - null) * (ours - null) > 0:
        return "direction only"
    return "does not reproduce"


def anchor(heading: str) -> str:
    """The GitHub-style link fragment of a markdown heading."""
    import re

    text = heading.lstrip("#").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return "#" + text.replace(" ", "-")
