"""robustness: attack the clean models over an eps grid with the attack library; write the table and sanity flags
(see advrep.experiments.robustness).

Outputs: reports/metrics/robustness.json (robust accuracy per model, attack and eps), reports/plots/robustness.csv
(the tidy table), reports/tables/robustness_flags.csv (Carlini et al.'s sanity flags), and the run record.
"""
import sys

from advrep import config
from advrep.experiments import robustness

if __name__ == "__main__":
    sys.exit(config.run_stage(__doc__, robustness.SECTIONS, robustness.run))
