"""Params: every committed profile is valid; bad keys, types and values are named in the error."""

import pytest
import yaml

from advrep import config
from advrep.experiments import schemas

SCHEMAS = schemas()

PROFILES = ["params.yaml", "profiles/smoke.yaml", "profiles/paper.yaml"]


@pytest.mark.parametrize("profile", PROFILES)
def test_committed_profiles_validate(root, profile):
    raw = config.read_yaml(root / profile)
    assert set(raw) >= {"train_mnist", "train_cifar", "report"}
    for section in raw:
        config.validate(section, raw[section], SCHEMAS[section], profile)


def test_profiles_share_the_same_sections(root):
    keys = [set(config.read_yaml(root / p)) for p in PROFILES]
    assert keys[0] == keys[1] == keys[2]


def _err(section, raw):
    with pytest.raises(config.ParamsError) as e:
        config.validate(section, raw, SCHEMAS[section])
    return str(e.value)


def test_unknown_key_is_named(tiny_cfg):
    tiny_cfg["optim"]["learning_rate"] = 0.1
    assert "train_mnist.optim.learning_rate: unknown key" in _err("train_mnist", tiny_cfg)


def test_negative_lr_is_rejected(tiny_cfg):
    tiny_cfg["optim"]["lr"] = -0.1
    assert "train_mnist.optim.lr: expected a number > 0, got -0.1" in _err("train_mnist", tiny_cfg)


def test_unknown_activation_is_rejected(tiny_cfg):
    tiny_cfg["model"]["activation"] = "swishy"
    msg = _err("train_mnist", tiny_cfg)
    assert "train_mnist.model.activation" in msg and "swishy" in msg and "relu" in msg


def test_wrong_type_is_rejected(tiny_cfg):
    tiny_cfg["train"]["epochs"] = "10"
    msg = _err("train_mnist", tiny_cfg)
    assert "train_mnist.train.epochs" in msg and "expected an int" in msg


def test_missing_key_is_named(tiny_cfg):
    del tiny_cfg["optim"]["lr"]
    assert "train_mnist.optim.lr: required key is missing" in _err("train_mnist", tiny_cfg)


def test_milestone_beyond_epochs_is_rejected(tiny_cfg):
    tiny_cfg["optim"] |= {"schedule": "step", "milestones": [5]}
    assert "milestones" in _err("train_mnist", tiny_cfg)


def test_every_bad_key_is_reported_at_once(tiny_cfg):
    tiny_cfg["optim"]["lr"] = 0
    tiny_cfg["train"]["batch_size"] = -1
    msg = _err("train_mnist", tiny_cfg)
    assert "optim.lr" in msg and "train.batch_size" in msg


def test_scientific_notation_is_a_float_like_dvc_reads_it(tmp_path, tiny_cfg):
    text = yaml.safe_dump({"train_mnist": tiny_cfg}).replace("lr: 0.05", "lr: 5e-2")
    assert "5e-2" in text
    (tmp_path / "p.yaml").write_text(text)
    assert config.load("train_mnist", SCHEMAS["train_mnist"], tmp_path / "p.yaml").optim.lr == pytest.approx(0.05)


def test_missing_section_and_file(tmp_path):
    (tmp_path / "p.yaml").write_text("report: {dpi: 100}\n")
    with pytest.raises(config.ParamsError, match="section 'train_mnist' is missing"):
        config.load("train_mnist", SCHEMAS["train_mnist"], tmp_path / "p.yaml")
    with pytest.raises(config.ParamsError, match="file not found"):
        config.load("report", SCHEMAS["report"], tmp_path / "absent.yaml")


def test_stage_reads_only_its_section(tmp_path, tiny_cfg):
    # a broken neighbour section does not stop this stage
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"train_mnist": tiny_cfg, "report": {"dpi": "high"}}))
    assert config.load("train_mnist", SCHEMAS["train_mnist"], tmp_path / "p.yaml").train.epochs == 3


def test_a_stage_with_bad_params_stops_before_any_work(root, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("train_mnist:\n  data: {dataset: mnist}\n  model: {arch: mnist_cnn, activation: swishy}\n"
                   "  optim: {lr: -1}\n  train: {epochs: 1, batch_size: 8, bogus: 1}\n")
    out = subprocess.run([sys.executable, str(root / "stages/train.py"), "train_mnist", "--params", str(bad)],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 2
    for key in ("train_mnist.model.activation", "train_mnist.optim.lr", "train_mnist.train.bogus: unknown key"):
        assert key in out.stderr
    assert list(tmp_path.iterdir()) == [bad]  # nothing written


# ---------------------------------------------------------------------------------------------------------------
# Bad input through the stage scripts: one line naming the key or file, exit status 2, no traceback, nothing written


def stage(root, tmp_path, script, params: dict | str, *args, files: dict | None = None):
    """Run a stage script in an empty folder (plus `files`) with the given params; return (result, new files)."""
    import subprocess
    import sys

    p = tmp_path / "p.yaml"
    p.write_text(params if isinstance(params, str) else yaml.safe_dump(params))
    for name, content in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    before = {f for f in tmp_path.rglob("*")}
    out = subprocess.run([sys.executable, str(root / "stages" / script), *args, "--params", str(p)], cwd=tmp_path,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""})
    return out, {f for f in tmp_path.rglob("*")} - before


def one_line_error(out, *needles):
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    msg = out.stderr.strip()
    assert len(msg.splitlines()) == 1, msg
    for n in needles:
        assert n in msg, msg


def default_section(root, name):
    return config.read_yaml(root / "params.yaml")[name]


def test_a_limit_above_what_the_data_holds_is_named(root, tmp_path):
    sec = default_section(root, "train_cifar")
    sec["data"]["train_limit"] = 1_000_000_000
    out, new = stage(root, tmp_path, "train.py", {"train_cifar": sec}, "train_cifar")
    one_line_error(out, "train_cifar.data", "train_limit", "50,000")
    assert not new


def test_duplicate_activations_are_refused(root, tmp_path):
    sec = default_section(root, "sat")
    sec["primary"] = ["relu", "relu"]
    out, new = stage(root, tmp_path, "sat.py", {"sat": sec})
    one_line_error(out, "sat.primary", "distinct")
    assert not new


def test_a_yaml_syntax_error_is_one_line(root, tmp_path):
    out, new = stage(root, tmp_path, "train.py", "train_mnist:\n  data: {dataset: mnist\n  seed: 0\n", "train_mnist")
    one_line_error(out, "not valid YAML", "line")
    assert not new


def test_cuda_without_a_gpu_is_a_named_bad_param(root, tmp_path):
    sec = default_section(root, "train_mnist")
    sec["device"] = "cuda"
    out, new = stage(root, tmp_path, "train.py", {"train_mnist": sec}, "train_mnist")
    one_line_error(out, "train_mnist.device", "no CUDA device")
    assert not new


def test_a_missing_source_model_is_named(root, tmp_path):
    sec = default_section(root, "robustness")
    out, new = stage(root, tmp_path, "robustness.py", {"robustness": sec})
    one_line_error(out, "data/models/train_", "/model.json: missing", "dvc repro")
    assert not new


def test_a_damaged_data_file_names_the_file_and_the_fix(root, tmp_path, mirror):
    import numpy as np

    from advrep import data

    arrays = data.fetch("mnist", mirror)
    good = tmp_path / "good.npz"
    np.savez(good, **arrays)
    blob = bytearray(good.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one byte flipped inside the compressed... stored pixels
    sec = default_section(root, "train_mnist")
    out, new = stage(root, tmp_path, "train.py", {"train_mnist": sec}, "train_mnist",
                     files={"data/raw/mnist.npz": bytes(blob)})
    one_line_error(out, "data/raw/mnist.npz", "dvc repro fetch")
    assert not new


@pytest.mark.parametrize("section,edit,needle", [
    ("kwta", lambda s: s["attacks"].append(dict(s["attacks"][0])), "unique names"),
    ("szegedy", lambda s: s.update(table1=["FC10(1e-4)", "nonexistent"]), "not among the nets"),
    ("sat", lambda s: s["eval"].update(n=9950), "eval.n + monitor.n"),
    ("nrf_train", lambda s: s.update(control_seeds=5), "control_seeds"),
    ("train_mnist", lambda s: s["optim"].update(schedule="step", milestones=[7]), "milestones"),
    ("goodfellow", lambda s: s.update(early_stopped="nope"), "not among the nets"),
])
def test_values_that_parse_but_cannot_work_together(root, section, edit, needle):
    sec = default_section(root, section)
    edit(sec)
    with pytest.raises(config.ParamsError, match=needle.replace("+", r"\+").replace("(", r"\(")):
        config.validate(section, sec, SCHEMAS[section])
