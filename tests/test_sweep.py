"""Sweeps: units run inline or through submitit's local executor give the same results; finished units are reused."""
import pytest
import torch

from advrep import store, sweep


def unit_fn(seed: int, scale: float) -> dict:
    """A unit of work with randomness seeded inside it, as the stages' units are."""
    g = torch.Generator().manual_seed(seed)
    return {"value": (torch.rand(3, generator=g) * scale).tolist(), "seed": seed}


def units(n=3):
    return [sweep.Unit(store.key("t", i), unit_fn, (i, 2.0), name=f"u{i}") for i in range(n)]


def test_inline_runs_in_order_and_reuses_finished_units(tmp_path, monkeypatch):
    r = store.Resume("t", root=tmp_path)
    first = sweep.run("t", units(), sweep.Executor(), r)
    assert [u["seed"] for u in first] == [0, 1, 2]
    monkeypatch.setattr(sys_module(), "unit_fn", lambda *a: pytest.fail("recomputed a finished unit"))
    again = sweep.run("t", [sweep.Unit(u.key, lambda *a: pytest.fail("recomputed"), u.args) for u in units()],
                      sweep.Executor(), r)
    assert again == first


def sys_module():
    import sys
    return sys.modules[__name__]


def test_two_units_with_one_key_are_refused(tmp_path):
    u = units(1)[0]
    with pytest.raises(ValueError, match="share a key"):
        sweep.run("t", [u, u], sweep.Executor(), store.Resume("t", root=tmp_path))


@pytest.mark.slow
def test_the_local_executor_gives_the_in_process_results(tmp_path, monkeypatch):
    import os
    from pathlib import Path

    # the local jobs are fresh processes: they must import this module (and advrep) by name
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])]))
    inline = sweep.run("a", units(), sweep.Executor(), store.Resume("a", root=tmp_path))
    local = sweep.run("b", units(), sweep.Executor(kind="local", parallel=2), store.Resume("b", root=tmp_path))
    assert local == inline
