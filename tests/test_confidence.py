"""Tests of art_stn.confidence: Clopper-Pearson bounds, top-two selection, the abstain test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from art_stn.confidence import (
    abstain_pvalue,
    check_alpha,
    clopper_pearson_lower,
    clopper_pearson_upper,
    top_two,
    top_two_bounds,
)

statsmodels_proportion = pytest.importorskip("statsmodels.stats.proportion")


@pytest.mark.parametrize("n", [1, 7, 100, 10_000])
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_clopper_pearson_matches_statsmodels(n, alpha):
    k = np.unique(np.linspace(0, n, 13).astype(int))
    # A two-sided interval at 2*alpha has one-sided bounds at alpha on each side.
    lo, hi = statsmodels_proportion.proportion_confint(k, n, alpha=2 * alpha, method="beta")
    np.testing.assert_allclose(clopper_pearson_lower(k, n, alpha), lo, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(clopper_pearson_upper(k, n, alpha), hi, rtol=1e-10, atol=1e-14)


def test_clopper_pearson_known_values():
    # k = n: the lower bound is alpha^(1/n); k = 0: the upper bound is 1 - alpha^(1/n).
    assert clopper_pearson_lower(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100))
    assert clopper_pearson_upper(0, 100, 0.001) == pytest.approx(1 - 0.001 ** (1 / 100))
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_upper(10, 10, 0.05) == 1.0


def test_lower_bound_coverage_by_simulation():
    # 2000 binomial experiments; each bound fails (p outside it) with probability <= alpha = 0.05 per experiment.
    # Six counts are checked against the 1 - 1e-8/6 quantile of Binomial(2000, 0.05), so a correct implementation
    # fails this (fixed-seed) test with probability < 1e-8.
    tolerance = binom.isf(1e-8 / 6, 2000, 0.05)
    rng = np.random.default_rng(2024)
    for p, n in [(0.3, 100), (0.9, 50), (0.99, 1000)]:
        k = rng.binomial(n, p, size=2000)
        failures = int(np.sum(clopper_pearson_lower(k, n, 0.05) > p))
        upper_failures = int(np.sum(clopper_pearson_upper(k, n, 0.05) < p))
        assert failures <= tolerance and upper_failures <= tolerance
        assert failures > 0  # the bound is not vacuous: it does fail sometimes


def test_joint_bonferroni_coverage_by_simulation():
    # Multinomial counts with p = (0.6, 0.3, 0.1): p1_lower <= 0.6 and p2_upper >= 0.3 hold together with
    # probability >= 1 - alpha = 0.9. False-failure probability: P(Binomial(2000, 0.1) > 260) < 1e-5.
    rng = np.random.default_rng(11)
    counts = rng.multinomial(200, [0.6, 0.3, 0.1], size=2000)
    bounds = top_two_bounds(counts, alpha=0.1, top=np.zeros(2000, dtype=int))
    failures = int(np.sum((bounds.p1_lower > 0.6) | (bounds.p2_upper < 0.3)))
    assert failures <= 260
    assert binom.sf(260, 2000, 0.1) < 1e-5


def test_top_two_and_given_top():
    counts = np.array([[5, 90, 5], [10, 10, 80], [50, 50, 0]])
    top, c1, c2 = top_two(counts)
    np.testing.assert_array_equal(top, [1, 2, 0])
    np.testing.assert_array_equal(c1, [90, 80, 50])
    np.testing.assert_array_equal(c2, [5, 10, 50])
    top, c1, c2 = top_two(counts, top=np.array([0, 0, 2]))
    np.testing.assert_array_equal(c1, [5, 10, 0])
    np.testing.assert_array_equal(c2, [90, 80, 50])


def test_top_two_bounds_clips_p2_and_flags_certified():
    counts = np.array([[1000, 0, 0], [500, 500, 0], [3, 2, 995]])
    b = top_two_bounds(counts, alpha=0.001)
    assert np.all(b.p2_upper <= 1 - b.p1_lower + 1e-15)
    assert np.all(b.p1_lower <= b.count1 / b.n)
    np.testing.assert_array_equal(b.certified, [True, False, True])
    np.testing.assert_allclose(b.p1_lower[0], (0.0005) ** (1 / 1000))


def test_abstain_pvalue_matches_scipy_binomtest():
    pairs = [(0, 0), (5, 5), (10, 3), (60, 40), (100, 0), (7, 1), (51, 49), (1000, 920)]
    ours = abstain_pvalue(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    ref = [1.0 if a + b == 0 else binomtest(a, a + b, 0.5).pvalue for a, b in pairs]
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_alpha_outside_unit_interval(alpha):
    with pytest.raises(ValueError, match="alpha"):
        top_two_bounds(np.array([[3, 1]]), alpha=alpha)


def test_alpha_wrong_type():
    with pytest.raises(TypeError, match="alpha"):
        check_alpha("0.05")


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        (np.array([3, 1]), "shape"),
        (np.array([[3]]), "shape"),
        (np.array([[3, -1]]), "non-negative"),
        (np.array([[0, 0]]), "at least one sample"),
        (np.array([[0.5, 1.0]]), "integer"),
        (np.array([[np.nan, 1.0]]), "integer"),
    ],
)
def test_bad_counts(counts, match):
    with pytest.raises(ValueError, match=match):
        top_two_bounds(counts, alpha=0.05)


def test_bad_top():
    with pytest.raises(ValueError, match="top"):
        top_two(np.array([[3, 1]]), top=np.array([2]))
