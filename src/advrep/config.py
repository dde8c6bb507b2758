"""Params: the loader, the command line of a stage, the shared schema blocks, and the error type.

Each stage section's schema lives with its experiment (`advrep.experiments.<name>.SECTIONS`) and is built from the
blocks here (data, model, optimizer, training, attack and adversarial-training specs). Each stage reads only its own
section. An unknown key, a wrong type or an impossible value stops the stage with a
message that names the key and what was expected, e.g.

    params.yaml: train_cifar.optim.lr: expected a number > 0, got -0.1

The YAML loader follows YAML 1.2 for floats (as DVC's own reader does), so `5e-4` is a number, not a string.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .data import DataError, SIZES
from .models import ACTIVATIONS, ARCHS


class ParamsError(ValueError):
    """params.yaml is missing a section or holds a key, type or value the stage cannot use."""


# What a stage reports as one line and exit status 2 (bad params, a missing or damaged input file), not a traceback.
INPUT_ERRORS = (ParamsError, DataError)


class _Loader(yaml.SafeLoader):
    pass


# YAML 1.1 (PyYAML) reads 5e-4 as a string; YAML 1.2 and DVC read it as a float. Agree with DVC.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$|^[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?$"
               r"|^[-+]?[0-9][0-9_]*\.[0-9_]*$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found")
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_Loader)
    except yaml.YAMLError as e:  # one line: where and what, not PyYAML's multi-line dump
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of stage sections at the top level")
    return data


def unique_names(items: list, what: str) -> list:
    """A validator body: at least one item, and no two with the same name."""
    names = [i.name for i in items]
    if not items or len(set(names)) != len(names):
        raise ValueError(f"expected at least one {what} and unique names, got {names}")
    return items


def increasing_eps(v: list[float]) -> list[float]:
    """A validator body: a non-empty increasing list of eps >= 0."""
    if not v or any(e < 0 for e in v) or v != sorted(v):
        raise ValueError("expected a non-empty increasing list of eps >= 0")
    return v


def known_activations(v: list[str], what: str = "activations") -> list[str]:
    """A validator body: known, distinct activation names."""
    bad = [a for a in v if a not in ACTIVATIONS]
    if bad or not v:
        raise ValueError(f"unknown {what} {bad}, expected some of {sorted(ACTIVATIONS)}")
    if len(set(v)) != len(v):
        raise ValueError(f"{what} must be distinct, got {v}")
    return v


def distinct_seeds(v: list[int]) -> list[int]:
    if len(v) < 1 or len(set(v)) != len(v) or any(s < 0 for s in v):
        raise ValueError(f"expected distinct seeds >= 0, got {v}")
    return v


class Strict(BaseModel):
    """Unknown keys are errors; no silent type coercion (an int is still accepted where a float is expected)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---------------------------------------------------------------------------------------------------------------
# Building blocks shared by the stage schemas


class ModelConfig(Strict):
    arch: str = Field(description="one of models.ARCHS")
    activation: str = "relu"
    widths: Optional[list[int]] = Field(None, description="hidden widths (MLP) or channel widths (CNN); null = default")
    gamma: Optional[float] = Field(None, gt=0, le=1)  # k-WTA sparsity ratio (activations kwta, relu_kwta only)

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str) -> str:
        if v not in ARCHS:
            raise ValueError(f"unknown architecture '{v}', expected one of {sorted(ARCHS)}")
        return v

    @field_validator("activation")
    @classmethod
    def _activation(cls, v: str) -> str:
        if v not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{v}', expected one of {sorted(ACTIVATIONS)}")
        return v

    @field_validator("widths")
    @classmethod
    def _widths(cls, v):
        if v is not None and any(w <= 0 for w in v):
            raise ValueError("expected a list of positive integers ([] for softmax regression) or null")
        return v

    def spec(self, dataset: str, **changes) -> dict:
        """The models.build config, with `changes` (e.g. another activation) applied; gamma only where set."""
        d = self.model_dump() | {"dataset": dataset} | changes
        return {k: v for k, v in d.items() if not (k == "gamma" and v is None)}


class OptimConfig(Strict):
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(gt=0)  # peak learning rate
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD momentum (Adam: beta1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)  # L2 on weights (not on biases or norm layers)
    schedule: Literal["constant", "onecycle", "step", "cosine"] = "constant"
    warmup: float = Field(0.0, ge=0, lt=1)  # onecycle: share of steps spent rising to the peak
    milestones: list[int] = Field(default_factory=list)  # step: epochs at which the LR is multiplied by gamma
    gamma: float = Field(0.1, gt=0, le=1)

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, v):
        if any(m <= 0 for m in v) or v != sorted(v):
            raise ValueError("expected increasing positive epoch numbers")
        return v


class AugmentConfig(Strict):
    crop: int = Field(0, ge=0, le=8)  # random translation by up to this many pixels (reflect padding); 0 = off
    flip: bool = False  # random horizontal flip


class TrainConfig(Strict):
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: AugmentConfig = AugmentConfig()
    amp: bool = False  # bf16 autocast for training where the device has native bf16 (CUDA, AVX512-BF16 CPUs)
    channels_last: bool = True  # faster convolutions on CPU (oneDNN) and on tensor-core GPUs
    eval_batch_size: int = Field(1000, gt=0)


class DataConfig(Strict):
    dataset: Literal["mnist", "cifar10"]
    train_limit: Optional[int] = Field(None, gt=0)  # first-N seeded subset of the training set; null = all
    test_limit: Optional[int] = Field(None, gt=0)  # first N test images; null = all 10,000

    @model_validator(mode="after")
    def _within_the_data(self):
        for key, have in (("train_limit", SIZES[self.dataset][0]), ("test_limit", SIZES[self.dataset][1])):
            within(getattr(self, key), have, f"{self.dataset} {key.split('_')[0]} images", key)
        return self


def within(n: Optional[int], have: int, what: str, key: str) -> None:
    """A limit asks for more examples than the data holds: say so instead of silently using all of them."""
    if n is not None and n > have:
        raise ValueError(f"{key}: {n:,} is more than the {have:,} {what}")


# ---------------------------------------------------------------------------------------------------------------
# Blocks of the attack and adversarial-training specs


class Stage(Strict):
    """What every stage section has: a seed and a device."""

    seed: int = Field(0, ge=0)
    device: str = "auto"  # auto = CUDA when present, else CPU

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", v):
            raise ValueError(f"unknown device '{v}', expected auto, cpu, cuda or cuda:N")
        return v


class AttackConfig(Strict):
    """One attack of an evaluation (see evaluate.AttackSpec)."""

    name: str
    kind: Literal["fgsm", "pgd", "autoattack", "autoattack_lite", "gradfree", "bpda", "transfer", "eot",
                  "autoattack_bpda"]  # autoattack_bpda: the standard AutoAttack, gradients through BPDA
    norm: Literal["linf", "l2"] = "linf"
    steps: int = Field(20, gt=0)
    step_ratio: float = Field(2.5, gt=0)  # step size = step_ratio * eps / steps (Madry et al.'s rule)
    restarts: int = Field(1, gt=0)
    loss: Literal["ce", "margin"] = "ce"
    samples: list[list[int]] = [[10**9, 100]]  # gradfree: [until_step, samples per step] pairs, a schedule
    sigma: float = Field(0.0, ge=0)  # gradfree only: sampling scale in pixels (0: eps)
    partners: int = Field(8, gt=0)  # eot only: random batch partners averaged per step
    max_n: Optional[int] = Field(None, gt=0)  # run on a subset of this many images with the same clean accuracy
    slow: bool = False  # run only at the slow_eps (AutoAttack's Square spends 5,000 queries per robust image)
    parts: Optional[list[Literal["apgd-ce", "apgd-t", "fab-t", "square"]]] = Field(None, exclude_if=lambda v: v is None)
    # autoattack kinds: a subset of the standard four at their standard settings (null: all four; left out of the
    # resolved config then, as before the key existed); a subset is a lighter attack, named by its parts

    @field_validator("samples")
    @classmethod
    def _samples(cls, v):
        if not v or any(len(p) != 2 or p[1] < 2 for p in v) or [p[0] for p in v] != sorted(p[0] for p in v):
            raise ValueError(f"expected [until_step, samples >= 2] pairs with increasing until_step, got {v}")
        return v

    @model_validator(mode="after")
    def _parts(self):
        if self.parts is None:
            return self
        if self.kind not in ("autoattack", "autoattack_bpda"):
            raise ValueError(f"attack '{self.name}': parts is for the autoattack kinds, not '{self.kind}'")
        if not self.parts or len(set(self.parts)) != len(self.parts):
            raise ValueError(f"attack '{self.name}': parts must name distinct attacks of AutoAttack, got {self.parts}")
        if len(self.parts) < 4 and "autoattack" in self.name.lower():
            raise ValueError(f"attack '{self.name}': {' + '.join(self.parts)} is not AutoAttack but a lighter attack; "
                             "name it by its parts (e.g. 'APGD-CE + APGD-T')")
        return self

    def spec_kwargs(self) -> dict:
        """The evaluate.AttackSpec arguments (the EOT partner count is the experiment's to use)."""
        kw = self.model_dump(exclude={"partners"})
        kw["samples"] = tuple(tuple(s) for s in self.samples)
        kw["parts"] = None if self.parts is None else tuple(self.parts)
        return kw


class AdversarialTraining(Strict):
    """PGD adversarial training (Madry et al.): each batch replaced by PGD examples; steps 1 is single-step (PGD-1
    with a random start, as in Wong et al. 2020 and Xie et al. 2020)."""

    norm: Literal["linf", "l2"] = "linf"
    eps: float = Field(gt=0)  # pixels in [0, 1]
    step: float = Field(gt=0)  # step size, pixels in [0, 1]
    steps: int = Field(1, gt=0)
    random_start: bool = True


class NetConfig(Strict):
    """One fully connected net of the Szegedy / Goodfellow experiments."""

    name: str
    arch: Literal["mlp", "maxout", "rbf"] = "mlp"
    widths: list[int]  # hidden widths; [] = softmax regression
    activation: str = "sigmoid"
    weight_decay: Optional[float] = Field(None, ge=0)  # overrides optim.weight_decay for this net
    part: Literal["P1", "P2", "all"] = "P1"  # training data: a half of the 60k training set, or all of it
    penalty: Optional[list[float]] = None  # Szegedy's weight decay: lambda_l * sum(W_l^2) / units_l per weight layer
    pretrain: Optional[Literal["autoencoder"]] = None  # the first layer pretrained (and frozen): Szegedy's AE400-10
    dropout: Optional[list[float]] = None  # [input, hidden] dropout rates (Goodfellow's maxout: [0.2, 0.5])

    _activation = field_validator("activation")(ModelConfig._activation.__func__)

    @field_validator("dropout")
    @classmethod
    def _dropout(cls, v):
        if v is not None and (len(v) != 2 or any(not 0 <= p < 1 for p in v)):
            raise ValueError(f"expected [input rate, hidden rate], each in [0, 1), got {v}")
        return v

    def spec(self, dataset: str = "mnist") -> dict:
        """The models.build config of this net."""
        out = {"arch": self.arch, "widths": self.widths, "activation": self.activation, "dataset": dataset}
        return out | ({"dropout": self.dropout} if self.dropout else {})

    def optim(self, base: OptimConfig) -> OptimConfig:
        """The shared optimizer settings, with this net's weight decay where it sets one."""
        return base if self.weight_decay is None else base.model_copy(update={"weight_decay": self.weight_decay})


class NetsExperiment(Stage):
    """A stage that trains a list of small nets with shared optimizer and training settings."""

    nets: list[NetConfig]
    optim: OptimConfig
    train: TrainConfig
    train_limit: Optional[int] = Field(None, gt=0)  # a seeded subset of this many images of each training part

    _names = field_validator("nets")(lambda v: unique_names(v, "net"))


# ---------------------------------------------------------------------------------------------------------------
# Loading and the command line of a stage


_EXPECT = {
    "greater_than": "a number > {gt:g}",
    "greater_than_equal": "a number >= {ge:g}",
    "less_than": "a number < {lt:g}",
    "less_than_equal": "a number <= {le:g}",
}


def _describe(err: dict[str, Any]) -> str:
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in _EXPECT:
        return f"expected {_EXPECT[kind].format(**ctx)}, got {got!r}"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {got!r}"
    if kind.endswith("_type"):
        what = kind.removesuffix("_type").replace("_", " ")
        return f"expected {'a ' if what[0] not in 'aeiou' else 'an '}{what}, got {type(got).__name__} {got!r}"
    return err["msg"].removeprefix("Value error, ")


def validate(section: str, raw: Any, schema: type[Strict], source: str = "params.yaml") -> Strict:
    """Validate one section's raw mapping against its schema; raise ParamsError naming every bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: section '{section}' must be a mapping, got {type(raw).__name__}")
    try:
        return schema.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in (section, *err["loc"]))
            lines.append(f"{source}: {loc}: {_describe(err)}")
        raise ParamsError("\n".join(lines)) from None


def load(section: str, schema: type[Strict], path: str | Path = "params.yaml") -> Strict:
    """Read `path`, take only `section`, validate it against `schema`. Other sections are not looked at."""
    data = read_yaml(path)
    if section not in data:
        raise ParamsError(f"{path}: section '{section}' is missing")
    return validate(section, data[section], schema, str(path))


def for_stage(doc: str, schemas: dict[str, type[Strict]]) -> tuple[str, Strict, str]:
    """Command line of a stage script: `[SECTION] [--params FILE]` (SECTION only when `schemas` offers several).
    Returns (section, validated params, params path); on bad params logs the one-line message and exits with
    status 2, before the stage does any work. The device is checked here too: `cuda` on a machine without one is
    a bad param, not a traceback at the first tensor."""
    import argparse

    from .store import logger

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if len(schemas) > 1:
        ap.add_argument("section", choices=sorted(schemas), help="the params.yaml section to read")
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = ap.parse_args()
    section = args.section if len(schemas) > 1 else next(iter(schemas))
    try:
        cfg = load(section, schemas[section], args.params)
        device = getattr(cfg, "device", None)
        if device is not None and device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ParamsError(f"{args.params}: {section}.device: '{device}' asked for, but torch sees no CUDA "
                                  "device on this machine (use auto or cpu)")
    except ParamsError as e:
        logger(section).error(str(e))
        raise SystemExit(2) from None
    return section, cfg, args.params


def run_stage(doc: str, schemas: dict[str, type[Strict]], run) -> int:
    """The whole of a stage script: parse its section (for_stage), then `run(section, cfg)`. A bad input found
    later (a missing or damaged file, values that parse but cannot work together with the data) ends the stage
    with its one-line message and exit status 2, not a traceback."""
    from .store import logger

    section, cfg, path = for_stage(doc, schemas)
    try:
        run(section, cfg)
    except INPUT_ERRORS as e:
        logger(section).error(str(e))
        return 2
    _record_imports(section)
    return 0


def _record_imports(section: str) -> None:
    """With $ADVREP_IMPORTS set to a folder, write there the advrep source files this stage imported while it
    ran: the test that dvc.yaml's deps are complete reads them (imports made lazily during a run included)."""
    import os
    import sys

    folder = os.environ.get("ADVREP_IMPORTS")
    if not folder:
        return
    root = Path(__file__).resolve().parent
    files = sorted({str(Path(m.__file__).resolve().relative_to(root.parent)) for name, m in list(sys.modules.items())
                    if name.split(".")[0] == "advrep" and getattr(m, "__file__", None)})
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"{section}.txt").write_text("\n".join(files) + "\n")
