"""nrf_train: Ilyas et al. 2019, retraining on the non-robust sets, tested on the original CIFAR-10 test set
(see advrep.experiments.nonrobust).

Outputs: data/nrf_train/ (models, run record), reports/metrics/nrf_train.json, reports/tables/nrf_train.csv,
reports/plots/nrf_curves.csv.
"""
import sys

from advrep import config
from advrep.experiments import nonrobust

if __name__ == "__main__":
    sys.exit(config.run_stage(__doc__, {"nrf_train": nonrobust.TrainParams}, nonrobust.run_train))
