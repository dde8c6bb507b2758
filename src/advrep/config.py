"""Params: one schema per stage section of params.yaml, validated strictly before any work starts.

Each stage reads only its own section. An unknown key, a wrong type or an impossible value stops the stage with a
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

from .models import ACTIVATIONS, ARCHS


class ParamsError(ValueError):
    """params.yaml is missing a section or holds a key, type or value the stage cannot use."""


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
    with open(path) as f:
        data = yaml.load(f, Loader=_Loader)
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of stage sections at the top level")
    return data


def _unique_names(items: list, what: str) -> list:
    names = [i.name for i in items]
    if not items or len(set(names)) != len(names):
        raise ValueError(f"expected at least one {what} and unique names, got {names}")
    return items


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
    amp: bool = False  # bf16 autocast where the device supports it well (CUDA); ignored on CPU
    channels_last: bool = True  # faster convolutions on CPU (oneDNN) and on tensor-core GPUs
    eval_batch_size: int = Field(1000, gt=0)


class DataConfig(Strict):
    dataset: Literal["mnist", "cifar10"]
    train_limit: Optional[int] = Field(None, gt=0)  # first-N seeded subset of the training set; null = all
    test_limit: Optional[int] = Field(None, gt=0)  # first N test images; null = all 10,000


# ---------------------------------------------------------------------------------------------------------------
# Stage sections


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


class TrainStage(Stage):
    """A clean training run (train_mnist, train_cifar)."""

    data: DataConfig
    model: ModelConfig
    optim: OptimConfig
    train: TrainConfig

    @model_validator(mode="after")
    def _milestones_inside(self):
        if any(m >= self.train.epochs for m in self.optim.milestones):
            raise ValueError(f"optim.milestones {self.optim.milestones} must lie below train.epochs={self.train.epochs}")
        return self


class AttackConfig(Strict):
    """One attack of an evaluation (see evaluate.AttackSpec)."""

    name: str
    kind: Literal["fgsm", "pgd", "autoattack", "gradfree", "bpda", "transfer"]
    norm: Literal["linf", "l2"] = "linf"
    steps: int = Field(20, gt=0)
    step_ratio: float = Field(2.5, gt=0)  # step size = step_ratio * eps / steps (Madry et al.'s rule)
    restarts: int = Field(1, gt=0)
    loss: Literal["ce", "margin"] = "ce"
    samples: int = Field(100, ge=2)  # gradfree only: function evaluations per step and example
    sigma: float = Field(0.0, ge=0)  # gradfree only: sampling scale in pixels (0: eps / 4)
    max_n: Optional[int] = Field(None, gt=0)  # run on the first max_n examples only (AutoAttack is slow on a CPU)
    slow: bool = False  # run only at each model's slow_eps (AutoAttack's Square spends 5,000 queries per robust image)


class TargetConfig(Strict):
    """A trained model to evaluate and its eps grid."""

    eps: list[float]  # pixels in [0, 1]; include 0 (clean) and one huge eps for the sanity check
    large_eps: float = Field(gt=0)  # an eps at which any working attack must reach ~0% accuracy
    slow_eps: list[float] = Field(default_factory=list)  # the eps at which attacks marked slow run

    @field_validator("eps")
    @classmethod
    def _eps(cls, v):
        if not v or any(e < 0 for e in v) or v != sorted(v):
            raise ValueError("expected a non-empty increasing list of eps >= 0")
        return v


class RobustnessStage(Stage):
    """White-box evaluation of the clean models with the attack library and its sanity flags."""

    n: int = Field(gt=0)  # first N test images per model
    batch_size: int = Field(250, gt=0)
    models: dict[Literal["train_mnist", "train_cifar"], TargetConfig]
    attacks: list[AttackConfig]

    _names = field_validator("attacks")(lambda v: _unique_names(v, "attack"))


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
    arch: Literal["mlp", "maxout"] = "mlp"
    widths: list[int]  # hidden widths; [] = softmax regression
    activation: str = "sigmoid"
    weight_decay: Optional[float] = Field(None, ge=0)  # overrides optim.weight_decay for this net
    part: Literal["P1", "P2", "all"] = "P1"  # training data: a half of the 60k training set, or all of it

    _activation = field_validator("activation")(ModelConfig._activation.__func__)

    def spec(self, dataset: str = "mnist") -> dict:
        """The models.build config of this net."""
        return {"arch": self.arch, "widths": self.widths, "activation": self.activation, "dataset": dataset}

    def optim(self, base: OptimConfig) -> OptimConfig:
        """The shared optimizer settings, with this net's weight decay where it sets one."""
        return base if self.weight_decay is None else base.model_copy(update={"weight_decay": self.weight_decay})


class NetsExperiment(Stage):
    """A stage that trains a list of small nets with shared optimizer and training settings."""

    nets: list[NetConfig]
    optim: OptimConfig
    train: TrainConfig

    _names = field_validator("nets")(lambda v: _unique_names(v, "net"))


class LbfgsConfig(Strict):
    n: int = Field(gt=0)  # test images attacked per net
    search_steps: int = Field(10, gt=0)  # rounds of the search over c
    max_iter: int = Field(100, gt=0)  # L-BFGS iterations per round (attacks.box_lbfgs)
    c_init: float = Field(1.0, gt=0)
    batch_size: int = Field(1000, gt=0)


class SzegedyStage(NetsExperiment):
    """Szegedy et al. 2014: minimal L-BFGS distortion and cross-model / cross-training-set transfer on MNIST."""

    split_seed: int = Field(0, ge=0)  # the P1/P2 split of the 60k training images
    lbfgs: LbfgsConfig
    amplify_to: float = Field(0.1, gt=0)  # RMS distortion of the "amplified" rows
    noise_std: float = Field(0.1, gt=0)  # Gaussian-noise baseline (pixels in [0, 1])
    fgsm_eps: float = Field(0.1, gt=0)  # L-inf eps of the FGSM / PGD transfer tables
    pgd_steps: int = Field(20, gt=0)


class GoodfellowStage(NetsExperiment):
    """Goodfellow et al. 2015: FGSM against shallow and maxout nets, and FGSM adversarial training."""

    eps: float = Field(0.25, gt=0)  # L-inf, pixels in [0, 1]
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the clean loss in the adversarial objective
    eps_curve: list[float]  # error-against-eps curves
    n_eval: Optional[int] = Field(None, gt=0)  # test images evaluated; null = all 10,000


class KwtaDataset(Strict):
    """One dataset of the k-WTA experiment: its architecture, training recipe and evaluation grid."""

    data: DataConfig
    model: ModelConfig  # its activation is replaced by each entry of the stage's `activations`
    optim: OptimConfig
    train: TrainConfig
    adversarial: Optional[AdversarialTraining] = None  # null = clean training (the authors' ResNet-18 used PGD AT)
    n: int = Field(gt=0)  # test images attacked
    eps: list[float]  # L-inf, pixels in [0, 1]; include 0
    fgsm_eps: list[float] = Field(default_factory=list)  # extra FGSM-only eps (the blog's table)
    large_eps: float = Field(gt=0)
    slow_eps: list[float] = Field(default_factory=list)  # where attacks marked slow run

    _eps = field_validator("eps")(TargetConfig._eps.__func__)


class KwtaStage(Stage):
    """Xiao et al. 2020's k-WTA against ReLU twins, under standard and adaptive attacks."""

    gamma: float = Field(0.1, gt=0, le=1)  # k-WTA sparsity ratio: the share of a layer's units kept
    temperature: float = Field(0.1, gt=0)  # BPDA surrogate: sigmoid width, relative to each layer's spread
    activations: list[str]  # relu first: the twin that transfer attacks start from
    datasets: dict[Literal["mnist", "cifar10"], KwtaDataset]
    attacks: list[AttackConfig]
    slow_for: Optional[list[str]] = None  # activations the slow attacks run on (null = all): AutoAttack is costly
    batch_size: int = Field(250, gt=0)

    _names = field_validator("attacks")(lambda v: _unique_names(v, "attack"))

    @model_validator(mode="after")
    def _slow_for(self):
        if self.slow_for is not None and not set(self.slow_for) <= set(self.activations):
            raise ValueError(f"slow_for {self.slow_for} must name activations of {self.activations}")
        return self

    @field_validator("activations")
    @classmethod
    def _acts(cls, v):
        bad = [a for a in v if a not in ACTIVATIONS]
        if bad or not v or v[0] != "relu" or len(set(v)) != len(v):
            raise ValueError(f"expected unique known activations starting with relu (the transfer source), got {v}")
        return v


class SatEval(Strict):
    n: int = Field(gt=0)  # test images evaluated
    eps: float = Field(gt=0)  # L-inf, pixels in [0, 1]
    steps: list[int]  # PGD step counts of the robust-accuracy-against-steps curve; the last is the headline
    step_ratio: float = Field(2.5, gt=0)  # PGD step = step_ratio * eps / steps
    restarts: int = Field(1, gt=0)
    autoattack_n: int = Field(0, ge=0)  # AutoAttack on the first N of them (0 = off)
    autoattack_for: list[str] = Field(default_factory=list)  # configurations (names) given AutoAttack, seed 0
    large_eps: float = Field(0.5, gt=0)  # sanity flag: PGD must reach ~0% here


class SatMonitor(Strict):
    n: int = Field(gt=0)  # held-out training images attacked after every epoch
    steps: int = Field(10, gt=0)  # multi-step PGD of the catastrophic-overfitting monitor


class SatStage(Stage):
    """Xie et al. 2020: adversarial training with each activation, and the ReLU gradient-quality ablation."""

    seeds: list[int]  # every configuration is trained once per seed
    data: DataConfig
    model: ModelConfig  # its activation is replaced by each configuration's
    optim: OptimConfig
    train: TrainConfig
    attacker: AdversarialTraining
    activations: list[str]
    ablation: bool = True  # the four cells: ReLU forward, smooth backward for attacker / optimizer, on or off
    monitor: SatMonitor
    eval: SatEval

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if len(v) < 1 or len(set(v)) != len(v) or any(s < 0 for s in v):
            raise ValueError(f"expected distinct seeds >= 0, got {v}")
        return v

    @field_validator("activations")
    @classmethod
    def _acts(cls, v):
        bad = [a for a in v if a not in ACTIVATIONS]
        if bad or not v:
            raise ValueError(f"unknown activations {bad}, expected some of {sorted(ACTIVATIONS)}")
        return v


class NrfStage(Stage):
    """Ilyas et al. 2019, step 1: the non-robust datasets D_det and D_rand by targeted L2 PGD on a source model."""

    source: str = "data/models/train_cifar"  # the clean source model (a directory written by models.save)
    robust_source: Optional[str] = None  # an adversarially trained model for the Table 9 control; null = skip
    train_limit: Optional[int] = Field(None, gt=0)  # seeded subset of the 50,000 training images; null = all
    eps: float = Field(0.5, gt=0)  # L2, pixels in [0, 1]
    step: float = Field(0.1, gt=0)  # normalised L2 step
    steps: int = Field(100, gt=0)
    paper_eps: Optional[float] = Field(None, gt=0)  # also build D_det at this eps (step scaled alike); null = skip
    batch_size: int = Field(500, gt=0)
    chunk: int = Field(5000, gt=0)  # images per saved chunk: a stopped generation resumes from the last chunk


class NrfTrainStage(Stage):
    """Ilyas et al. 2019, step 2: fresh models trained on the non-robust datasets, tested on the original test set."""

    seeds: list[int]
    model: ModelConfig
    det: TrainConfig  # D_det: no augmentation (Table 3)
    det_optim: OptimConfig  # D_det: LR 0.1
    rand: TrainConfig  # D_rand: augmentation
    rand_optim: OptimConfig  # D_rand: LR 0.01
    controls: bool = True  # no-perturbation control, and D_det from the robust source (when generated)
    test_limit: Optional[int] = Field(None, gt=0)

    _seeds = field_validator("seeds")(SatStage._seeds.__func__)

    @model_validator(mode="after")
    def _milestones_inside(self):
        for name in ("det", "rand"):
            t, o = getattr(self, name), getattr(self, f"{name}_optim")
            if any(m >= t.epochs for m in o.milestones):
                raise ValueError(f"{name}_optim.milestones {o.milestones} must lie below {name}.epochs={t.epochs}")
        return self


class ReportStage(Strict):
    dpi: int = Field(110, gt=20, le=600)  # resolution of the PNG figures


SECTIONS: dict[str, type[Strict]] = {
    "train_mnist": TrainStage,
    "train_cifar": TrainStage,
    "robustness": RobustnessStage,
    "szegedy": SzegedyStage,
    "goodfellow": GoodfellowStage,
    "kwta": KwtaStage,
    "sat": SatStage,
    "nrf_generate": NrfStage,
    "nrf_train": NrfTrainStage,
    "report": ReportStage,
}

_EXPECT = {
    "greater_than": "a number > {gt:g}",
    "greater_than_equal": "a number >= {ge:g}",
    "less_than": "a number < {lt:g}",
    "less_than_equal": "a number <= {le:g}",
}


def _describe(err: dict[str, Any], schema: type[BaseModel]) -> str:
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
    msg = err["msg"].removeprefix("Value error, ")
    return msg


def validate(section: str, raw: Any, source: str = "params.yaml") -> Strict:
    """Validate one section's raw mapping against its schema; raise ParamsError naming every bad key."""
    if section not in SECTIONS:
        raise ParamsError(f"{source}: no schema for section '{section}' (known: {sorted(SECTIONS)})")
    schema = SECTIONS[section]
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: section '{section}' must be a mapping, got {type(raw).__name__}")
    try:
        return schema.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in (section, *err["loc"]))
            lines.append(f"{source}: {loc}: {_describe(err, schema)}")
        raise ParamsError("\n".join(lines)) from None


def for_stage(doc: str, section: str | None = None) -> tuple[str, Strict]:
    """Command line of a stage script: `[SECTION] [--params FILE]`. Returns (section, validated params); on bad
    params logs the message and exits with status 2, before the stage does any work."""
    import argparse

    from .store import logger

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if section is None:
        ap.add_argument("section", help="the params.yaml section to read")
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = ap.parse_args()
    section = section or args.section
    try:
        return section, load(section, args.params)
    except ParamsError as e:
        logger(section).error(str(e))
        raise SystemExit(2) from None


def load(section: str, path: str | Path = "params.yaml") -> Strict:
    """Read `path`, take only `section`, validate it. Other sections are not looked at."""
    data = read_yaml(path)
    if section not in data:
        raise ParamsError(f"{path}: section '{section}' is missing")
    return validate(section, data[section], str(path))
