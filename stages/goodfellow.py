"""goodfellow: Goodfellow et al. 2015 on MNIST: FGSM against softmax and maxout nets, FGSM adversarial training
(see advrep.experiments.goodfellow).

Outputs: data/goodfellow/ (nets, run record), reports/metrics/goodfellow.json, reports/plots/goodfellow_eps.csv,
reports/tables/goodfellow.csv, reports/figures/goodfellow_examples.png.
"""
import sys

from advrep import config
from advrep.experiments import goodfellow

if __name__ == "__main__":
    sys.exit(config.run_stage(__doc__, goodfellow.SECTIONS, goodfellow.run))
