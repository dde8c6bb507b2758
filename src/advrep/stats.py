"""Statistics over seeds and images: means with 95% t intervals, paired differences, binomial intervals, verdicts.

Every number over seeds in the report is a mean with the half-width of its 95% interval from the t distribution
(not mean ± sd); a comparison that is the point of an experiment is paired (the same seed's arms share initial
weights, batch order and noise) and reported as the mean paired difference with its interval. Verdicts are computed
here from those intervals, so no report text decides them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats as _st


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float  # half-width of the 95% interval (nan for a single value)
    n: int  # values (seeds, pairs or images) behind it

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def as_dict(self, prefix: str = "") -> dict:
        return {f"{prefix}mean": self.mean, f"{prefix}ci95": self.half, f"{prefix}n": self.n}


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean and the half-width of its t interval; a single value gets an undefined (nan) half-width."""
    v = [float(x) for x in values]
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    m = sum(v) / n
    if n == 1:
        return Interval(m, math.nan, 1)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))
    return Interval(m, _st.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n), n)


def paired(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of b - a over pairs (the same seed in both arms) with its t interval."""
    if len(a) != len(b):
        raise ValueError(f"paired: {len(a)} values against {len(b)}")
    return mean_ci([y - x for x, y in zip(a, b)], level)


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Difference of means b - a of two independent samples, with Welch's t interval."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((v - ma) ** 2 for v in a) / (len(a) - 1)
    vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1)
    se2 = va / len(a) + vb / len(b)
    if se2 == 0:
        return Interval(mb - ma, 0.0, len(a) + len(b))
    dof = se2 ** 2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    return Interval(mb - ma, _st.t.ppf(0.5 + level / 2, dof) * math.sqrt(se2), len(a) + len(b))


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson interval of an accuracy k / n (the spread of one measurement on n images)."""
    if n == 0:
        return math.nan, math.nan
    z = _st.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def paired_images(a_ok: Sequence[bool], b_ok: Sequence[bool], level: float = 0.95) -> Interval:
    """Difference of two accuracies on the same images (b - a), with a normal interval over the per-image
    differences: for one seed, where there is no spread over seeds to use."""
    d = [float(y) - float(x) for x, y in zip(a_ok, b_ok)]
    n = len(d)
    if n < 2:
        return Interval(sum(d) / max(n, 1), math.nan, n)
    m = sum(d) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1))
    return Interval(m, _st.norm.ppf(0.5 + level / 2) * sd / math.sqrt(n), n)


def verdict(diff: Interval, min_effect: float) -> str:
    """What a paired difference (treatment - control) says about a claimed gain:
    'confirmed' (the interval lies above 0), 'reversed' (below 0), 'ruled out at this resolution' (it excludes
    every gain of `min_effect` or more, but not 0), or 'not resolved' (it is too wide to say)."""
    if diff.n < 2 or math.isnan(diff.half):
        return "not resolved"
    if diff.lo > 0:
        return "confirmed"
    if diff.hi < 0:
        return "reversed"
    if diff.hi < min_effect:
        return "ruled out at this resolution"
    return "not resolved"
