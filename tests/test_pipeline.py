"""End to end: the smoke profile through `dvc repro` in a scratch clone, as a new user would run it."""
import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

spec = importlib.util.spec_from_file_location("smoke", ROOT / ".ci" / "smoke.py")
smoke = importlib.util.module_from_spec(spec)
spec.loader.exec_module(smoke)

DVC = str(Path(sys.executable).parent / "dvc")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, mirror):
    """A scratch clone on the smoke profile after one full `dvc repro`."""
    scratch = smoke.scratch_clone(tmp_path_factory.mktemp("scratch"))
    env = smoke.env_for(scratch) | {"ADVREP_DATA_MIRROR": str(mirror)}
    t0 = time.time()
    out = subprocess.run([DVC, "repro"], cwd=scratch, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return scratch, env, time.time() - t0


def run(cmd, scratch, env):
    """stdout and stderr together (DVC logs to both)."""
    out = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def run_json(cmd, scratch, env):
    out = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout or "{}")


@pytest.mark.slow
def test_smoke_pipeline_writes_every_output(pipeline):
    scratch, _, seconds = pipeline
    assert seconds < 180, f"smoke profile took {seconds:.0f}s, budget 180s"
    for f in ["data/raw/mnist.npz", "data/raw/cifar10.npz", "data/models/train_mnist/model.pt",
              "data/models/train_cifar/model.json", "reports/report.md", "reports/figures/clean_training.png"]:
        assert (scratch / f).is_file(), f
    mnist = json.loads((scratch / "reports/metrics/train_mnist.json").read_text())
    cifar = json.loads((scratch / "reports/metrics/train_cifar.json").read_text())
    assert mnist["train_size"] == 2000 and mnist["test_size"] == 1000
    assert mnist["test_acc"] > 0.6 and cifar["test_acc"] > 0.2  # tiny runs, but clearly above chance (0.1)
    report = (scratch / "reports/report.md").read_text()
    assert "## Clean source models" in report and "## Provenance" in report
    assert f"{100 * mnist['test_acc']:.2f}%" in report  # the measured number, as the report prints it
    run_record = json.loads((scratch / "data/models/train_mnist/run.json").read_text())
    assert run_record["params"]["train"]["epochs"] == 2 and run_record["provenance"]["git_revision"] != "unknown"


@pytest.mark.slow
def test_second_repro_is_a_fast_no_op(pipeline):
    scratch, env, _ = pipeline
    t0 = time.time()
    out = run([DVC, "repro"], scratch, env)
    assert time.time() - t0 < 10 and "Running stage" not in out


@pytest.mark.slow
def test_editing_report_code_reruns_only_the_report(pipeline):
    scratch, env, _ = pipeline
    with open(scratch / "src/advrep/report.py", "a") as f:
        f.write("\n# a harmless edit\n")
    out = run([DVC, "repro"], scratch, env)
    assert "Running stage 'report'" in out
    assert [line for line in out.splitlines() if line.startswith("Running stage")] == ["Running stage 'report':"]


@pytest.mark.slow
def test_params_and_metrics_diff_across_branches(pipeline):
    scratch, env, _ = pipeline
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    run([*git, "add", "-A"], scratch, env)
    run([*git, "commit", "-q", "-m", "smoke results"], scratch, env)
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=scratch, capture_output=True, text=True).stdout.strip()
    run(["git", "switch", "-q", "-c", "lower-lr"], scratch, env)
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    params["train_mnist"]["optim"]["lr"] = 0.01
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([DVC, "repro"], scratch, env)
    pdiff = run_json([DVC, "params", "diff", base, "--json"], scratch, env)
    lr = pdiff["params.yaml"]["train_mnist.optim.lr"]
    assert (lr["old"], lr["new"]) == (0.1, 0.01)
    mdiff = run_json([DVC, "metrics", "diff", base, "--json"], scratch, env)
    assert "test_acc" in mdiff["reports/metrics/train_mnist.json"]
    assert "reports/metrics/train_cifar.json" not in mdiff  # untouched stage, unmoved metrics


@pytest.mark.slow
def test_killed_training_stage_resumes_to_the_same_metrics(pipeline, tmp_path):
    scratch, env, _ = pipeline
    params = yaml.safe_load((scratch / "profiles/smoke.yaml").read_text())
    params["train_mnist"]["train"]["epochs"] = 4
    p = tmp_path / "p4.yaml"
    p.write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "stages/train.py", "train_mnist", "--params", str(p)]
    metrics = scratch / "reports/metrics/train_mnist.json"
    ckpt = scratch / "data/checkpoints/train_mnist.pt"

    run(cmd, scratch, env)
    reference = json.loads(metrics.read_text())
    assert not ckpt.exists()  # removed once training finished

    proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists()
    log = run(cmd, scratch, env)
    assert "resuming from" in log
    assert json.loads(metrics.read_text()) == reference
