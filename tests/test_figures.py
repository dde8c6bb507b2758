"""Every figure of the report renders from fixed data (the committed results under reports/), and none has text
running into other text. A figure that can no longer be drawn, or whose labels collide, fails here."""
import shutil
from pathlib import Path

import pytest
import yaml

from advrep import report
from advrep.experiments import modules
from advrep.render import Context

ROOT = Path(__file__).resolve().parents[1]


def figures_in_dvc_yaml() -> list[str]:
    outs = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]["outs"]
    return sorted(Path(o if isinstance(o, str) else next(iter(o))).stem for o in outs
                  if str(o if isinstance(o, str) else next(iter(o))).startswith("reports/figures/"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    for d in ("metrics", "plots", "tables", "runs"):
        if (ROOT / "reports" / d).is_dir():
            shutil.copytree(ROOT / "reports" / d, out / d)
    ctx = Context(out, 60, report.anchors())
    ms = modules()
    report.write(out, [m.section for m in ms], claims=[m.claims for m in ms if hasattr(m, "claims")], ctx=ctx)
    return out, ctx


def test_every_figure_of_the_pipeline_is_drawn(rendered):
    out, ctx = rendered
    expected = figures_in_dvc_yaml()
    assert expected, "dvc.yaml's report stage lists no figures"
    for name in expected:
        png = out / "figures" / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert sorted(ctx.drawn) == expected, "figures drawn and figures declared in dvc.yaml differ"


def test_no_figure_has_overlapping_text(rendered):
    _, ctx = rendered
    bad = {name: pairs for name, pairs in ctx.drawn.items() if pairs}
    assert not bad, bad


def test_the_overlap_check_can_fail():
    import matplotlib.pyplot as plt

    from advrep.render import overlaps
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_xticks(range(5), [f"a long label {i}" for i in range(5)])
    fig.canvas.draw()
    assert overlaps(fig)
    plt.close(fig)
