"""Report: assemble reports/report.md from the experiments' sections, then the provenance of every stage.

The sections come from the experiment modules (`advrep.experiments.sections()`, in the pipeline's order); this
module only puts them together, so it imports no experiment. A section whose stage has not run says so, instead of
showing an invented number.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import yaml
from pydantic import Field

from .config import Strict
from .render import Claim, Context, anchor, ci, pct, table
from .store import atomic, git_revision, logger, save_json

ANCHORS = Path(__file__).with_name("anchors.yaml")


class Params(Strict):
    dpi: int = Field(110, gt=20, le=600)  # resolution of the PNG figures


SECTIONS = {"report": Params}


def anchors() -> dict:
    """The published numbers the report quotes (anchors.yaml)."""
    return yaml.safe_load(ANCHORS.read_text())


def _profile(ctx: Context) -> str:
    """Which profile the runs come from: the profiles/*.yaml that params.yaml is a copy of (the README's way to
    run a profile), else 'default'."""
    import yaml as _yaml

    root = ctx.root.parent
    params = root / "params.yaml"
    if not params.is_file():
        return "default"
    mine = _yaml.safe_load(params.read_text())
    for path in sorted((root / "profiles").glob("*.yaml")):
        if _yaml.safe_load(path.read_text()) == mine:
            return path.stem
    return "default"


def provenance_section(ctx: Context) -> str:
    runs = ctx.runs()
    rows = [{"stage": f"`{name}`", "seed": r.get("seed", "–"), "wall time": f"{r['wall_seconds']:.0f} s",
             "device": r["provenance"]["device"], "torch": r["provenance"]["torch"],
             "git revision": f"`{r['provenance']['git_revision']}`", "finished (UTC)": r["provenance"]["time_utc"]}
            for name, r in runs.items()]
    total = sum(r["wall_seconds"] for r in runs.values())
    return (
        "## Provenance\n\n"
        f"Report written at git revision `{git_revision()}` (`+changes`: the code under `src/`, `stages/` or "
        "`dvc.yaml` differed from that commit; `dvc.lock` pins the exact inputs of every stage).\n\n"
        f"{table(rows)}\n\nTotal stage wall time: {total / 60:.1f} min.\n\n"
        "<details><summary>Resolved params of each stage (defaults filled in)</summary>\n\n```yaml\n"
        f"{yaml.safe_dump({n: r['params'] for n, r in runs.items()}, sort_keys=False)}```\n\n</details>\n"
    )


def scoreboard(ctx: Context, claims: list[Claim]) -> str:
    """The first thing after the title: one row per headline claim, with its computed verdict and a link."""
    rows = []
    for c in claims:
        if c.ours is None or c.ours != c.ours:
            ours = "not run"
        elif c.signed:
            ours = ci(c.ours, (c.hi - c.lo) / 2 if c.lo is not None and c.hi is not None else None, signed=True)
        else:
            ours = pct(c.ours) + (f" ({100 * c.lo:.1f}-{100 * c.hi:.1f})" if c.lo is not None and c.lo == c.lo
                                  else "")
        pub = "–" if c.published is None else (f"{100 * c.published:+.1f} pts" if c.signed else pct(c.published))
        rows.append({"paper": c.paper, "claim": f"[{c.claim}]({anchor(c.section)})" if c.section else c.claim,
                     "published": pub, "ours (95% interval)": ours, "n": c.n, "profile": c.profile,
                     "verdict": f"**{c.verdict}**"})
    counts = {}
    for c in claims:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    return ("## Scoreboard\n\nEvery headline claim, its published number, ours with its 95% interval, and a verdict "
            "computed from them: *reproduces* (the published number lies in our interval, which excludes no "
            "effect), *direction only* (the effect is there, at another size), *not resolved* (our interval "
            "holds both the published number and no effect), *does not reproduce*, *not run*. "
            f"Here: {summary}.\n\n{table(rows)}\n")


def write(root: str | Path, sections: Iterable[Callable[[Context], str]], dpi: int = 110,
          claims: Iterable[Callable[[Context], list[Claim]]] = (), ctx: Context | None = None) -> Path:
    """Write reports/report.md and its figures from `sections` (each: Context -> markdown), with the scoreboard
    of `claims` (each: Context -> its paper's claims) first, and reports/metrics/scoreboard.json; return its
    path. `ctx.drawn` says, per figure, which texts overlapped."""
    root = Path(root)
    ctx = ctx or Context(root, dpi, anchors())
    body = [section(ctx) for section in sections]  # sections draw the figures the claims may not need
    rows = [c for f in claims for c in f(ctx)]
    profile = _profile(ctx)
    for c in rows:
        c.profile = c.profile or profile
    save_json(root / "metrics" / "scoreboard.json",
              {f"{c.paper}: {c.claim}": {"verdict": c.verdict, "ours": c.ours, "published": c.published,
                                         "lo": c.lo, "hi": c.hi} for c in rows})
    parts = [
        "# advrep: replication report\n",
        "_Regenerated by `dvc repro` from the metrics in `reports/metrics/`; do not edit by hand. "
        "Every measured number stands beside the published one, with the settings that differ._\n",
        scoreboard(ctx, rows),
        *body,
        provenance_section(ctx),
    ]
    for name, pairs in ctx.drawn.items():
        if pairs:
            logger("report").warning(f"figures/{name}.png: overlapping text {pairs[:3]}")
    path = root / "report.md"
    with atomic(path, "w") as f:
        f.write("\n".join(parts))
    return path
