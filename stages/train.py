"""train_<name>: train a clean source model from its params section (see advrep.experiments.clean).

usage: python stages/train.py SECTION   (train_mnist or train_cifar; outputs under data/models/SECTION)
Outputs: data/models/SECTION (model.pt, model.json, run.json), reports/metrics/SECTION.json,
reports/plots/SECTION.csv (per-epoch curves), reports/runs/SECTION.json.
"""
import sys

from advrep import config
from advrep.experiments import clean

if __name__ == "__main__":
    sys.exit(config.run_stage(__doc__, clean.SECTIONS, clean.run))
