"""fetch: write data/raw/mnist.npz and data/raw/cifar10.npz as uint8 arrays checked against canonical hashes.

Route: the offline mirror named by $ADVREP_DATA_MIRROR when set, else torchvision's download. Not a param on purpose:
both routes must give the same bytes, and the hash check makes sure they do.
"""
import argparse
import sys
from pathlib import Path

from advrep import data, store

log = store.logger("fetch")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("data/raw"))
    args = ap.parse_args()
    try:
        mirror = data.mirror_from_env()
        log.info(f"source: {'offline mirror ' + str(mirror) if mirror else 'torchvision download'}")
        for name in data.DATASETS:
            arrays = data.fetch(name, mirror)
            store.save_npz(args.out / f"{name}.npz", **arrays)
            log.info(f"{name}: {', '.join(f'{k}{list(v.shape)}' for k, v in arrays.items())} verified -> "
                     f"{args.out / (name + '.npz')}")
    except data.DataError as e:
        log.error(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
