"""Intervals and verdicts: t intervals against scipy, paired and Welch differences, the verdict rules."""
import math

import numpy as np
import pytest
from scipy import stats as st

from advrep import render, stats


def test_mean_ci_is_the_t_interval():
    v = [0.31, 0.35, 0.29, 0.33, 0.36]
    iv = stats.mean_ci(v)
    lo, hi = st.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=st.sem(v))
    assert iv.mean == pytest.approx(np.mean(v)) and iv.lo == pytest.approx(lo) and iv.hi == pytest.approx(hi)
    assert math.isnan(stats.mean_ci([0.3]).half) and stats.mean_ci([0.3]).n == 1


def test_paired_and_welch_differences():
    a, b = [0.30, 0.32, 0.35, 0.31], [0.32, 0.33, 0.38, 0.33]
    d = stats.paired(a, b)
    assert d.mean == pytest.approx(np.mean(np.subtract(b, a)))
    assert d.half == pytest.approx(stats.mean_ci(np.subtract(b, a)).half)
    w = stats.welch(a, b)
    r = st.ttest_ind(b, a, equal_var=False)
    lo, hi = r.confidence_interval(0.95)
    assert w.mean == pytest.approx(np.mean(b) - np.mean(a)) and w.lo == pytest.approx(lo) and w.hi == pytest.approx(hi)
    with pytest.raises(ValueError):
        stats.paired([1, 2], [1])


def test_binomial_and_paired_image_intervals():
    lo, hi = stats.binomial_ci(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
    assert stats.binomial_ci(0, 100)[0] == pytest.approx(0.0, abs=1e-12)
    same = stats.paired_images([True, False] * 50, [True, False] * 50)
    assert same.mean == 0 and same.half == 0


@pytest.mark.parametrize("mean,half,expected", [
    (0.05, 0.02, "confirmed"), (-0.05, 0.02, "reversed"), (0.002, 0.005, "ruled out at this resolution"),
    (0.01, 0.03, "not resolved")])
def test_paired_verdicts(mean, half, expected):
    assert stats.verdict(stats.Interval(mean, half, 8), min_effect=0.01) == expected


@pytest.mark.parametrize("published,ours,lo,hi,null,expected", [
    (0.26, 0.25, 0.22, 0.28, 0.03, "reproduces"),
    (0.44, 0.28, 0.26, 0.30, 0.10, "direction only"),
    (0.44, 0.10, 0.08, 0.12, 0.10, "does not reproduce"),
    (0.44, 0.30, 0.05, 0.50, 0.10, "not resolved"),
    (0.44, None, None, None, 0.10, "not run"),
    (0.44, 0.05, 0.03, 0.07, 0.10, "does not reproduce"),   # beyond the null, on the wrong side
])
def test_scoreboard_verdicts(published, ours, lo, hi, null, expected):
    assert render.verdict(published, ours, lo, hi, null) == expected


def test_bound_claims():
    c = render.Claim("p", "above 5%", 0.05, 0.10, 0.09, 0.11, bound="above")
    assert c.verdict == "reproduces"
    assert render.Claim("p", "above 5%", 0.05, 0.02, 0.01, 0.03, bound="above").verdict == "does not reproduce"
    assert render.Claim("p", "above 5%", 0.05, 0.05, 0.03, 0.07, bound="above").verdict == "not resolved"


def test_not_below_claims():
    # "no better than": refuted only by an interval wholly below the bound (Szegedy's units vs random directions)
    for lo, hi, expected in ((0.01, 0.15, "reproduces"), (-0.05, 0.10, "reproduces"), (-0.15, -0.01,
                                                                                      "does not reproduce")):
        assert render.Claim("p", "not below 0", 0.0, (lo + hi) / 2, lo, hi, bound="not below").verdict == expected
