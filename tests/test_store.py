"""The one key function and what it is fed: every ingredient of a run changes its key; resumable units."""
import subprocess
import sys

import pytest
import torch

from advrep import robust, store, train
from advrep.attacks import Linf
from advrep.config import OptimConfig, TrainConfig
from advrep.data import Split


def split(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    return Split(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n))


BASE = dict(spec={"arch": "mlp", "widths": [8], "dataset": "mnist"}, trainset=split(0), testset=split(1),
            cfg=TrainConfig(epochs=2, batch_size=8), optim=OptimConfig(lr=0.1), seed=0,
            objective=robust.fgsm_objective(0.25, 0.5), on_epoch=None)


@pytest.mark.parametrize("ingredient,changed", [
    ("spec", {"arch": "mlp", "widths": [9], "dataset": "mnist"}),
    ("trainset", split(2)),  # other pixels and labels
    ("testset", split(3)),  # the test split's metrics are part of the resumed history
    ("cfg", TrainConfig(epochs=3, batch_size=8)),
    ("optim", OptimConfig(lr=0.2)),
    ("seed", 1),
    ("objective", robust.fgsm_objective(0.3, 0.5)),  # another eps of the same objective
    ("objective", robust.fgsm_objective(0.25, 0.4)),  # another alpha
    ("objective", robust.pgd_objective(Linf(0.25), 1, 0.25)),
    ("objective", None),
    ("on_epoch", robust.overfit_monitor(torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), Linf(0.1), 2)),
])
def test_every_ingredient_of_a_training_run_changes_its_key(ingredient, changed):
    base = train.run_key(**BASE)
    assert train.run_key(**(BASE | {ingredient: changed})) != base
    assert train.run_key(**BASE) == base  # and the key is a function of them alone


def test_the_code_is_an_ingredient(tmp_path, monkeypatch):
    mod = tmp_path / "fakemod.py"
    mod.write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    a = store.code_hash("fakemod")
    mod.write_text("x = 2\n")
    assert store.code_hash("fakemod") != a
    assert store.code_hash("advrep.train") != store.code_hash("advrep.models")


def test_an_objective_that_does_not_say_what_it_is_cannot_be_keyed():
    with pytest.raises(ValueError, match="spec"):
        train.run_key(**(BASE | {"objective": lambda m, x, y: 0}))


def test_an_objective_must_apply_the_configured_label_smoothing():
    with pytest.raises(ValueError, match="label_smoothing"):
        train.run_key(**(BASE | {"cfg": TrainConfig(epochs=2, batch_size=8, label_smoothing=0.1)}))
    ok = BASE | {"cfg": TrainConfig(epochs=2, batch_size=8, label_smoothing=0.1),
                 "objective": robust.fgsm_objective(0.25, 0.5, label_smoothing=0.1)}
    assert train.run_key(**ok)


def test_resume_keeps_units_until_cleared(tmp_path):
    r = store.Resume("stage", root=tmp_path)
    assert r.get("k") is None
    r.put("k", {"state": {"w": torch.ones(2)}, "rows": [{"a": 1.5, "b": "x"}]})
    got = store.Resume("stage", root=tmp_path).get("k")
    assert torch.equal(got["state"]["w"], torch.ones(2)) and got["rows"] == [{"a": 1.5, "b": "x"}]
    r.clear()
    assert not (tmp_path / "stage").exists()


def test_kill_hook_stops_the_process_right_after_a_checkpoint(tmp_path):
    code = ("import sys; sys.path.insert(0, 'src'); from advrep import store; r = store.Resume('s', root=sys.argv[1]);"
            "[r.put(str(i), {'i': i}) for i in range(5)]")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env={"ADVREP_KILL_AFTER": "2",
                                                                            "PATH": "/usr/bin:/bin"},
                         cwd=str(__import__("conftest").ROOT), capture_output=True, text=True)
    assert out.returncode == 137
    assert sorted(p.name for p in (tmp_path / "s").glob("*.pt")) == ["0.pt", "1.pt"]
