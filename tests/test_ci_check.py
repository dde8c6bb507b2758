"""The smoke comparison itself (.ci/smoke.py `judge`): machine noise passes, a real change fails."""
import copy
import importlib.util
import json

import pytest
import yaml

from conftest import ROOT

spec = importlib.util.spec_from_file_location("smoke", ROOT / ".ci" / "smoke.py")
smoke = importlib.util.module_from_spec(spec)
spec.loader.exec_module(smoke)
TOL = yaml.safe_load((ROOT / ".ci" / "tolerance.yaml").read_text())


def baseline():
    got = smoke.read_metrics(smoke.BASELINE)
    assert got, "no committed smoke baseline"
    return got


def test_the_measured_noise_passes():
    """The smoke profile at 1 thread (another reduction order, as another machine's kernels give) against the
    baseline made at 2 threads: every move is within tolerance."""
    noise = smoke.read_metrics(smoke.NOISE / "threads1")
    assert noise, "no measured noise in .ci/noise/threads1 (run `make smoke-noise`)"
    assert set(noise) == set(baseline())
    assert smoke.judge(baseline(), noise, TOL) == []
    # and the noise is real: the two runs differ
    assert any(json.dumps(noise[k], sort_keys=True) != json.dumps(v, sort_keys=True) for k, v in baseline().items())


def test_a_broken_attack_fails():
    """An attack that stops working leaves robust accuracy at clean accuracy: the check must fail on it."""
    base = baseline()
    broken = copy.deepcopy(base)
    rob = broken["reports/metrics/robustness.json"]
    for model, attacks in rob.items():
        if not isinstance(attacks, dict):
            continue
        for name, cells in attacks.items():
            if isinstance(cells, dict) and "eps 0" in cells:
                for k in cells:
                    if k.startswith("eps "):
                        cells[k] = cells["eps 0"]
    failures = smoke.judge(base, broken, TOL)
    assert failures and all("robustness.json" in f for f in failures)


def test_structural_values_must_not_move_and_new_metrics_are_named():
    base = baseline()
    moved = copy.deepcopy(base)
    moved["reports/metrics/train_mnist.json"]["train_size"] += 1
    moved["reports/metrics/train_mnist.json"]["a_new_metric"] = 0.5
    failures = smoke.judge(base, moved, TOL)
    assert any("train_size changed" in f for f in failures)
    assert any("a_new_metric is new" in f for f in failures)


def test_tolerance_of_an_accuracy_follows_its_n():
    flat = {"m.n": 100, "m.acc": 0.5, "big.n": 10000, "big.acc": 0.99}
    small, _ = smoke.limit("m.acc", 0.5, 0.5, flat, TOL)
    large, _ = smoke.limit("big.acc", 0.99, 0.99, flat, TOL)
    assert small == pytest.approx(TOL["accuracy"]["z"] * (2 * 0.25 / 100) ** 0.5)
    assert large == TOL["accuracy"]["floor"]  # the floor holds where the standard error is tiny
    assert smoke.n_of("a.b.c", {"a.n": 7}) == 7 and smoke.n_of("a.b.c", {}) is None


def test_fresh_check_names_changed_code_and_params_and_ignores_missing_data():
    spec2 = importlib.util.spec_from_file_location("fresh", ROOT / ".ci" / "fresh.py")
    fresh = importlib.util.module_from_spec(spec2)
    spec2.loader.exec_module(fresh)
    status = {"train_mnist": [{"changed deps": {"data/raw/mnist.npz": "deleted", "src/advrep/train.py": "modified",
                                                "params.yaml": {"train_mnist": "modified"}}},
                              {"changed outs": {"data/models/train_mnist": "deleted"}}],
              "robustness": [{"changed deps": {"data/models/train_mnist": "deleted"}}]}
    got = fresh.stale(status)
    assert set(got) == {"train_mnist"}
    assert "src/advrep/train.py modified" in got["train_mnist"] and any("params.yaml:train_mnist" in w
                                                                          for w in got["train_mnist"])
