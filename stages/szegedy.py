"""szegedy: Szegedy et al. 2014 on MNIST: nets trained on halves P1 / P2, minimal L-BFGS distortion, transfer
(see advrep.experiments.szegedy).

Outputs: data/szegedy/ (nets, run record), reports/metrics/szegedy.json, reports/tables/szegedy_*.csv,
reports/figures/szegedy_examples.png.
"""
import sys

from advrep import config
from advrep.experiments import szegedy

if __name__ == "__main__":
    sys.exit(config.run_stage(__doc__, szegedy.SECTIONS, szegedy.run))
