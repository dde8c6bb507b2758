"""report: regenerate reports/report.md and reports/figures/ from the committed metrics and run records."""
import sys

from advrep import config, report, store

log = store.logger("report")


def main() -> int:
    _, cfg = config.for_stage(__doc__, "report")
    path = report.write("reports", dpi=cfg.dpi)
    log.info(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
