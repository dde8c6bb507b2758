"""sat: Smooth Adversarial Training (Xie et al. 2020) on CIFAR-10 (see advrep.experiments.sat).

Outputs: data/sat/ (models, run record), reports/metrics/sat.json, reports/plots/sat.csv (one row per
configuration, seed and attack), reports/tables/sat_monitor.csv (per-epoch monitor), reports/tables/sat_flags.csv.
"""
import sys

from advrep import config
from advrep.experiments import sat

if __name__ == "__main__":
    sys.exit(config.run_stage(__doc__, sat.SECTIONS, sat.run))
