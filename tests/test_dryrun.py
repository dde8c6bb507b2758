"""Dry runs of the paper and gpu profiles: every stage, their architectures and code paths, every count shrunk
(advrep.dryrun), end to end on CPU. A crash that would come at hour three of a GPU run comes here in minutes."""
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from advrep import config, dryrun, train
from advrep.experiments import schemas
from conftest import ROOT

spec = importlib.util.spec_from_file_location("smoke", ROOT / ".ci" / "smoke.py")
smoke = importlib.util.module_from_spec(spec)
spec.loader.exec_module(smoke)
DVC = str(Path(sys.executable).parent / "dvc")


@pytest.mark.parametrize("profile", ["paper", "gpu"])
def test_the_shrunk_profile_validates_and_keeps_the_architectures(profile):
    raw = config.read_yaml(ROOT / "profiles" / f"{profile}.yaml")
    small = dryrun.shrink(raw)
    S = schemas()
    for section, sec in small.items():
        config.validate(section, sec, S[section], f"dry {profile}")
    assert small["train_cifar"]["model"] == raw["train_cifar"]["model"]
    assert small["sat"]["attacker"]["steps"] == raw["sat"]["attacker"]["steps"]  # PGD-1 training stays PGD-1
    assert small["train_cifar"]["train"]["epochs"] == 1 and small["sat"]["seeds"] == [0, 1]
    assert all(s.get("device", "cpu") == "cpu" for s in small.values())


def test_amp_and_device_choice_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train.pick_device("auto").type == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA"):
        train.pick_device("cuda")
    assert train.bf16_native(torch.device("cuda"))
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert not train.bf16_native(torch.device("cpu"))  # emulated bf16 is slower: stay in fp32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert train.bf16_native(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.pick_device("auto").type == "cuda"


@pytest.mark.slow
@pytest.mark.dryrun  # not yet inside CI's budget (the paper profile's dry run ran past 7 minutes): `make test-dryrun`
@pytest.mark.parametrize("profile", ["paper", "gpu"])
def test_dry_run_end_to_end(profile, tmp_path, mirror):
    scratch = smoke.scratch_clone(tmp_path / "scratch", profile=None)
    small = dryrun.shrink(config.read_yaml(scratch / "profiles" / f"{profile}.yaml"))
    (scratch / "params.yaml").write_text(yaml.safe_dump(small, sort_keys=False))
    env = smoke.env_for(scratch) | {"ADVREP_DATA_MIRROR": str(mirror)}
    t0 = time.time()
    out = subprocess.run([DVC, "repro"], cwd=scratch, env=env, capture_output=True, text=True)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    runs = {p.stem: json.loads(p.read_text()) for p in (scratch / "reports/runs").glob("*.json")}
    assert set(runs) >= {"train_mnist", "train_cifar", "szegedy", "goodfellow", "robustness", "nrf_generate",
                         "nrf_train", "kwta", "sat"}
    assert runs["train_cifar"]["params"]["model"]["arch"] == small["train_cifar"]["model"]["arch"]
    assert (scratch / "reports/report.md").read_text().startswith("# advrep")
    print(f"{profile} dry run: {time.time() - t0:.0f}s")
