"""Dry runs: a profile with every count shrunk (images, epochs, steps, seeds, samples), the same architectures,
attack kinds and code paths, so that a GPU profile can be run end to end on a CPU in minutes before its real run.

    python -m advrep.dryrun profiles/paper.yaml > params.yaml     # then: dvc repro (device: cpu)

One rule table (`RULES`) maps a key to its shrunk value, wherever the key appears; the result still validates
against every stage's schema (tests/test_dryrun.py runs the paper and gpu profiles this way, end to end).
"""
from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

# key -> shrunk value (a number is a cap: the smaller of it and the profile's value is kept; null stays null only
# where the key means "all", so it is replaced too)
RULES: dict[str, Any] = {
    "train_limit": 96, "test_limit": 200, "n": 24, "n_eval": 48, "pgd_n": 24, "curve_n": 48, "validation": 32, "rubbish_n": 32,
    "epochs": 1, "batch_size": 32, "eval_batch_size": 64, "steps": 2, "search_steps": 2, "max_iter": 5,
    "restarts": 1, "max_n": 4, "autoattack_n": 4, "pool": 16, "members": 2, "directions": 4, "top": 4,
    "points": 5, "power_iterations": 3, "shuffles": 2, "partners": 2, "chunk": 48, "mechanism_seeds": 1,
    "exploratory_seeds": 1, "control_seeds": 1, "sweep_seeds": 1, "monitor_n": 8,
}
LISTS = {"seeds": [0, 1], "exploratory": None}  # replaced outright (None: keep the first item only)


def shrink(profile: dict) -> dict:
    """A copy of `profile` with every count of RULES capped, devices set to cpu, seeds and sweeps cut down."""
    out = copy.deepcopy(profile)

    def walk(d: Any, path: tuple) -> Any:
        if isinstance(d, dict):
            if "slow_eps" in d and "large_eps" in d:
                # the slow attacks (AutoAttack, gradient-free) run where every example falls at once: their code
                # paths are exercised without their 5,000-query budgets on a CPU
                d["slow_eps"] = [d["large_eps"]] if d["slow_eps"] else []
            for k, v in list(d.items()):
                if k == "device":
                    d[k] = "cpu"
                elif k in LISTS and isinstance(v, list):
                    d[k] = LISTS[k] if LISTS[k] is not None else v[:1]
                elif k in RULES and (isinstance(v, (int, float)) and not isinstance(v, bool) or
                                     (v is None and (k.endswith("limit") or k in ("n", "n_eval")))):  # null: all
                    if k == "steps" and path and path[-1] == "attacker":
                        continue  # an adversarial-training attacker keeps its step count (PGD-1 stays PGD-1)
                    d[k] = RULES[k] if v is None else type(v)(min(v, RULES[k]))
                elif k == "steps" and isinstance(v, list):
                    d[k] = [s for s in (1, 2)]
                elif k == "samples" and isinstance(v, list):
                    d[k] = [[1, 4], [2, 4]]
                elif k == "milestones" and isinstance(v, list):
                    d[k] = []  # one epoch: no room for an LR drop
                elif k == "sweep" and isinstance(v, dict):
                    v["eps"] = v.get("eps", [])[:1]
                    v["train_limit"] = None
                else:
                    walk(v, path + (k,))
        elif isinstance(d, list):
            for i, v in enumerate(d):
                walk(v, path + (str(i),))
        return d

    walk(out, ())
    for sec in out.values():  # keep the SAT monitor and evaluation inside the shrunk test set
        if isinstance(sec, dict) and isinstance(sec.get("monitor"), dict):
            sec["monitor"]["n"] = min(sec["monitor"]["n"], RULES["monitor_n"])
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        profile = yaml.safe_load(f)
    yaml.safe_dump(shrink(profile), sys.stdout, sort_keys=False, default_flow_style=None, width=120)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
