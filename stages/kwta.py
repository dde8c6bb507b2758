"""kwta: Xiao et al. 2020's k-WTA against ReLU twins under standard and adaptive attacks
(see advrep.experiments.kwta).

Outputs: data/kwta/ (models, run record), reports/metrics/kwta.json, reports/plots/kwta.csv (accuracy per
dataset, model, attack and eps), reports/tables/kwta_flags.csv, reports/tables/kwta_training.csv.
"""
import sys

from advrep import config
from advrep.experiments import kwta

if __name__ == "__main__":
    sys.exit(config.run_stage(__doc__, kwta.SECTIONS, kwta.run))
