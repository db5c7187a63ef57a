"""Tests of art_stn.bounds: values against brute force, the facts of DESIGN.md, and input validation."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from art_stn.bounds import cohen_l2_radius, laplace_l1_radius, pixeldp_l2_radius, renyi_l2_radius

ALL_BOUNDS = [renyi_l2_radius, laplace_l1_radius, cohen_l2_radius, pixeldp_l2_radius]


def _brute_renyi(p1: float, p2: float, sigma: float = 1.0) -> float:
    """Theorem 2 by brute force in 40-digit arithmetic: the plain formula on a dense grid of alpha, then ternary
    refinement around the best grid point, and the alpha -> 1 limit (geometric mean)."""
    mpmath.mp.dps = 40
    q1, q2 = mpmath.mpf(p1), mpmath.mpf(p2)

    def objective(log_am1):
        alpha = 1 + mpmath.e**log_am1
        b = 1 - alpha
        mean = ((q1**b + q2**b) / 2) ** (1 / b) if q2 > 0 else mpmath.mpf(0)
        return -2 * sigma**2 / alpha * mpmath.log(1 - q1 - q2 + 2 * mean)

    grid = np.linspace(-25.0, 20.0, 901)
    values = [objective(mpmath.mpf(t)) for t in grid]
    i = int(np.argmax([float(v) for v in values]))
    lo, hi = mpmath.mpf(grid[max(i - 1, 0)]), mpmath.mpf(grid[min(i + 1, len(grid) - 1)])
    for _ in range(80):
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if objective(m1) > objective(m2):
            hi = m2
        else:
            lo = m1
    limit = -2 * sigma**2 * mpmath.log(1 - (mpmath.sqrt(q1) - mpmath.sqrt(q2)) ** 2)
    return float(mpmath.sqrt(max(objective(lo), limit)))


BRUTE_CASES = [
    (0.6, 0.4),
    (0.9, 0.1),
    (0.99, 0.0),
    (0.7, 0.0),
    (0.999999, 1e-9),
    (0.999999999, 0.0),
    (0.51, 0.49),
    (0.3, 0.29),
    (0.2, 0.1),
    (0.04, 0.0007),
    (0.95, 0.04),
    (0.5001, 0.4999),
    (0.8, 0.15),
]


@pytest.mark.parametrize(("p1", "p2"), BRUTE_CASES)
def test_renyi_matches_brute_force_sup(p1, p2):
    assert renyi_l2_radius(p1, p2, 1.0) == pytest.approx(_brute_renyi(p1, p2), rel=1e-6)


def test_renyi_matches_brute_force_random_and_scales_with_sigma():
    rng = np.random.default_rng(7)
    p1 = rng.uniform(0.05, 1.0, 12)
    p2 = rng.uniform(0.0, 1.0, 12) * np.minimum(p1, 1.0 - p1) * 0.999
    sigma = 0.37
    ours = renyi_l2_radius(p1, p2, sigma)
    brute = np.array([_brute_renyi(a, b, sigma) for a, b in zip(p1, p2, strict=True)])
    np.testing.assert_allclose(ours, brute, rtol=1e-6)


def test_renyi_never_below_a_dense_alpha_grid():
    # The sup cannot be below the max over any set of alphas: check against 20001 alphas in plain float64, keeping
    # only the (alpha, p) pairs where the naive formula does not overflow, and alpha - 1 >= e^-8 (closer to 1 the
    # naive power mean loses digits to cancellation; the mpmath tests above cover that range).
    rng = np.random.default_rng(3)
    p1 = rng.uniform(0, 1, 400) ** 0.3
    p2 = rng.uniform(0, 1, 400) * np.minimum(p1, 1 - p1)
    alpha = 1.0 + np.exp(np.linspace(-8, 14, 20001))
    b = 1.0 - alpha
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        power_sum = p1[:, None] ** b + p2[:, None] ** b
        mean = (power_sum / 2.0) ** (1.0 / b)
        values = -2.0 / alpha * np.log(1 - p1[:, None] - p2[:, None] + 2 * mean)
    values = np.where(np.isfinite(power_sum) & np.isfinite(values), values, -np.inf)
    dense = values.max(axis=1)
    ours = renyi_l2_radius(p1, p2, 1.0)
    assert np.all(ours**2 >= dense * (1 - 1e-5) - 1e-15)


def test_edge_cases_are_finite_and_nonnegative():
    p1 = np.array([0.5, 0.3, 1 - 1e-15, 1 - 1e-9, 0.7, 0.0, 0.2, 1e-300])
    p2 = np.array([0.5, 0.3, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0])
    for bound in (renyi_l2_radius, laplace_l1_radius, pixeldp_l2_radius):
        r = bound(p1, p2, 0.5)
        assert np.all(np.isfinite(r)) and np.all(r >= 0), bound.__name__
    r = renyi_l2_radius(p1, p2, 0.5)
    assert r[0] == 0.0 and r[1] == 0.0 and r[5] == 0.0 and r[6] == 0.0
    assert r[2] > r[3] > r[4] > 0
    # Cohen is finite where p2 > 0 and p1 < 1, infinite when p2 == 0 (Phi^-1(0) = -inf): the tight bound itself.
    assert cohen_l2_radius(0.5, 0.5, 1.0) == 0.0
    assert math.isinf(cohen_l2_radius(0.7, 0.0, 1.0))
    # p1 = 1 exactly is the one degenerate input where the bound is infinite (never from a finite-sample bound).
    assert math.isinf(renyi_l2_radius(1.0, 0.0, 1.0))


def test_scalar_in_scalar_out_and_shapes_broadcast():
    assert isinstance(renyi_l2_radius(0.8, 0.1, 0.5), float)
    r = renyi_l2_radius(np.full((3, 4), 0.8), 0.1, np.array([0.25, 0.5, 0.75, 1.0]))
    assert r.shape == (3, 4)
    np.testing.assert_allclose(r[:, 1], 2 * r[:, 0])
    assert laplace_l1_radius(np.array([0.9, 0.8]), np.array([0.05, 0.1]), 1.0).shape == (2,)


def test_renyi_below_cohen():
    rng = np.random.default_rng(0)
    p1 = rng.uniform(0, 1, 50_000)
    p2 = rng.uniform(0, 1, 50_000) * np.minimum(p1, 1 - p1)
    assert np.all(renyi_l2_radius(p1, p2, 1.0) <= cohen_l2_radius(p1, p2, 1.0))


def test_renyi_above_pixeldp_and_twice_when_far_apart():
    rng = np.random.default_rng(1)
    p1 = rng.uniform(0.2, 1, 50_000)
    p2 = rng.uniform(0, 1, 50_000) * np.minimum(p1, 1 - p1) * 0.99
    renyi, pixeldp = renyi_l2_radius(p1, p2, 1.0), pixeldp_l2_radius(p1, p2, 1.0)
    assert np.all(renyi > pixeldp)
    far = (p1 >= 0.6) & (p2 <= 0.1)  # the paper's Figure 5: more than 2x when p1 >> p2
    assert far.sum() > 1000
    assert np.all(renyi[far] > 2.0 * pixeldp[far])


def test_laplace_binary_case_is_tight_form():
    p1 = np.linspace(0.5, 0.9999, 101)
    np.testing.assert_allclose(laplace_l1_radius(p1, 1 - p1, 0.3), -0.3 * np.log(2 * (1 - p1)), rtol=1e-12, atol=1e-15)


def test_cohen_one_class_form():
    p1 = np.array([0.6, 0.9, 0.999])
    np.testing.assert_allclose(
        cohen_l2_radius(p1, 1 - p1, 0.5), 0.5 * np.array([0.2533471, 1.2815516, 3.0902323]), rtol=1e-6
    )


@pytest.mark.parametrize("bound", ALL_BOUNDS)
def test_monotone_in_scale_and_gap_and_zero_at_tie(bound):
    p1 = np.linspace(0.3, 0.99, 60)
    p2 = np.full_like(p1, 0.005)
    r_small, r_big = bound(p1, p2, 0.5), bound(p1, p2, 1.0)
    assert np.all(r_big >= r_small) and np.all(r_big[p1 > 0.3] > r_small[p1 > 0.3])
    # growing p1 with p2 fixed, shrinking p2 with p1 fixed
    assert np.all(np.diff(r_small) >= 0)
    p2_grid = np.linspace(0.3, 0.0, 60)
    assert np.all(np.diff(bound(0.65, p2_grid, 1.0)) >= 0)
    assert bound(0.4, 0.4, 1.0) == 0.0


@pytest.mark.parametrize("bound", ALL_BOUNDS)
@pytest.mark.parametrize(
    ("p1", "p2", "scale", "match"),
    [
        (float("nan"), 0.1, 1.0, "p1"),
        (0.7, float("nan"), 1.0, "p2"),
        (1.2, 0.1, 1.0, "p1"),
        (0.7, -0.1, 1.0, "p2"),
        (0.3, 0.4, 1.0, "p1` must be >= `p2"),
        (0.7, 0.4, 1.0, r"p1 \+ p2"),
        (0.7, 0.1, 0.0, "sigma|scale"),
        (0.7, 0.1, -1.0, "sigma|scale"),
        (0.7, 0.1, float("nan"), "sigma|scale"),
        (0.7, 0.1, float("inf"), "sigma|scale"),
        (np.array([0.7, 0.8]), np.array([0.1, 0.1, 0.1]), 1.0, "broadcast"),
    ],
)
def test_invalid_input_raises_value_error_naming_argument(bound, p1, p2, scale, match):
    with pytest.raises(ValueError, match=match):
        bound(p1, p2, scale)


def test_non_numeric_input_raises_type_error():
    with pytest.raises(TypeError, match="p1"):
        renyi_l2_radius("high", 0.1, 1.0)
    with pytest.raises(TypeError, match="sigma"):
        cohen_l2_radius(0.7, 0.1, "big")


def test_sum_slightly_above_one_from_rounding_is_accepted():
    p1 = 0.7
    p2 = 1 - p1 + 1e-15
    assert renyi_l2_radius(p1, p2, 1.0) > 0
