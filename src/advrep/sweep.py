"""Sweeps: the independent units of a stage (one training run per configuration and seed, one retraining per set)
run in this process, as local subprocesses, or as a Slurm job array, and their results gathered in order.

The executor is a param of the stage (`executor: {kind: inline | local | slurm, ...}`); DVC still sees one stage
with the same outputs, whatever ran it. Local and Slurm execution go through submitit (one pure-Python package with
both executors, job arrays and requeue on preemption). A unit is a module-level function and its arguments, so it
pickles by reference; it returns plain data (tensors, numbers, strings, lists and dicts of them).

Every finished unit is kept under its key (`store.Resume`) until the stage succeeds: a stage killed half-way, or a
job array with a few failed tasks, runs only the missing units when started again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import Field

from .config import Strict
from .store import Resume, logger

log = logger("sweep")


class Executor(Strict):
    """Where a stage's independent units run."""

    kind: Literal["inline", "local", "slurm"] = "inline"  # inline: one after another in the stage's own process
    parallel: int = Field(1, gt=0)  # local: units running at once (a 2-core CPU gains nothing from more than 1)
    partition: Optional[str] = None  # slurm: the partition to submit to
    gpus_per_node: int = Field(0, ge=0)  # slurm: GPUs per task
    cpus_per_task: int = Field(4, gt=0)  # slurm
    mem_gb: int = Field(16, gt=0)  # slurm: memory per task
    timeout_min: int = Field(60, gt=0)  # local and slurm: a task running longer is killed (and requeued on slurm)
    array_parallelism: int = Field(64, gt=0)  # slurm: tasks of the array running at once


@dataclass
class Unit:
    key: str  # store.key of everything that defines the unit's result
    fn: Callable[..., Any]  # a module-level function (pickled by reference for local and slurm execution)
    args: tuple = ()
    name: str = ""  # for the logs
    kwargs: dict = field(default_factory=dict)

    def __call__(self):
        return self.fn(*self.args, **self.kwargs)


def _call(unit: Unit):
    return unit()


def _submitit(cfg: Executor, folder: Path):
    import submitit

    if cfg.kind == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=cfg.timeout_min)
    else:
        ex = submitit.SlurmExecutor(folder=str(folder))
        params = dict(time=cfg.timeout_min, gpus_per_node=cfg.gpus_per_node, cpus_per_task=cfg.cpus_per_task,
                      mem=f"{cfg.mem_gb}GB", array_parallelism=cfg.array_parallelism)
        if cfg.partition:
            params["partition"] = cfg.partition
        ex.update_parameters(**params)
    return ex


def run(stage: str, units: list[Unit], cfg: Executor, resume: Optional[Resume] = None) -> list[Any]:
    """The results of `units`, in order: kept ones loaded, the others computed where `cfg` says, each stored as it
    arrives."""
    resume = resume or Resume(stage)
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"{stage}: two units of the sweep share a key {dup}: they would overwrite each other")
    results = {u.key: resume.get(u.key) for u in units}
    todo = [u for u in units if results[u.key] is None]
    if len(todo) < len(units):
        log.info(f"{stage}: {len(units) - len(todo)} of {len(units)} units already done (resumed)")
    if cfg.kind == "inline":
        for u in todo:
            t = time.time()
            results[u.key] = resume.put(u.key, u())
            log.info(f"{stage}: {u.name or u.key} done in {time.time() - t:.0f}s")
    elif todo:
        ex = _submitit(cfg, resume.dir / "submitit")
        if cfg.kind == "slurm":  # one job array; the stage waits for it
            jobs = ex.map_array(_call, todo)
            log.info(f"{stage}: submitted {len(jobs)} units as Slurm job array {jobs[0].job_id.split('_')[0]}")
            for u, job in zip(todo, jobs):
                results[u.key] = resume.put(u.key, job.result())
        else:  # local: `parallel` subprocesses at a time
            for i in range(0, len(todo), cfg.parallel):
                wave = todo[i:i + cfg.parallel]
                jobs = [ex.submit(_call, u) for u in wave]
                for u, job in zip(wave, jobs):
                    t = time.time()
                    results[u.key] = resume.put(u.key, job.result())
                    log.info(f"{stage}: {u.name or u.key} done (local job {job.job_id}) in {time.time() - t:.0f}s")
    return [results[k] for k in keys]
