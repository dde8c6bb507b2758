"""report: regenerate reports/report.md and reports/figures/ from the committed metrics and run records.

The sections come from the experiment modules, in the pipeline's order (advrep.experiments.ORDER); advrep.report
assembles them. The imports below are explicit so that dvc.yaml's deps of this stage can be checked against them.
"""
import sys

from advrep import config, report, store
from advrep.experiments import clean, goodfellow, kwta, nonrobust, robustness, sat, szegedy  # noqa: F401
from advrep.experiments import modules


def run(section: str, cfg: report.Params) -> None:
    ms = modules()
    path = report.write("reports", [m.section for m in ms], dpi=cfg.dpi,
                        claims=[m.claims for m in ms if hasattr(m, "claims")])
    store.logger("report").info(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(config.run_stage(__doc__, report.SECTIONS, run))
