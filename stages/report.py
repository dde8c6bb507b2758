"""report: regenerate reports/report.md and reports/figures/ from the committed metrics and run records."""
import argparse
import sys

from advrep import config, report, store

log = store.logger("report")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    try:
        cfg = config.load("report", args.params)
    except config.ParamsError as e:
        log.error(str(e))
        return 2
    path = report.write("reports", dpi=cfg.dpi)
    log.info(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
