"""nrf_generate: Ilyas et al. 2019's non-robust CIFAR-10 training sets D_det and D_rand, by targeted L2 PGD against
a source model (see advrep.experiments.nonrobust).

Outputs: data/nrf/*.npz, data/nrf/run.json, reports/metrics/nrf_generate.json (attack success rate and distortion
per set), reports/figures/nrf_examples.png. Stopped runs resume from the finished chunks under data/checkpoints/nrf/.
"""
import sys

from advrep import config
from advrep.experiments import nonrobust

if __name__ == "__main__":
    sys.exit(config.run_stage(__doc__, {"nrf_generate": nonrobust.GenerateParams}, nonrobust.run_generate))
