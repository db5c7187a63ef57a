"""Rounding may only shrink a certificate: every float radius is at most its exact value (50-digit arithmetic).

The exact references are mpmath evaluations of the closed forms. The Renyi bound is checked against the exact
two-class Cohen radius, which is never below it in exact arithmetic (Renyi <= Cohen, DESIGN.md), so a float Renyi
radius above it claims more than the samples support. Deterministic: Hypothesis runs derandomized under the `ci`
profile (tests/conftest.py), so the false-failure probability of this file is 0.
"""

from __future__ import annotations

import mpmath
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from art_stn.bounds import cohen_certify_l2_radius, cohen_l2_radius, laplace_l1_radius, renyi_l2_radius

mpmath.mp.dps = 50


def _exact_cohen(p1: float, p2: float, sigma: float) -> mpmath.mpf:
    """sigma / 2 (Phi^-1(p1) - Phi^-1(p2)) in 50 digits."""
    inv = lambda p: mpmath.sqrt(2) * mpmath.erfinv(2 * mpmath.mpf(p) - 1)  # noqa: E731
    return mpmath.mpf(sigma) / 2 * (inv(p1) - inv(p2))


def _exact_laplace(p1: float, p2: float, scale: float) -> mpmath.mpf:
    return -mpmath.mpf(scale) * mpmath.log(1 - mpmath.mpf(p1) + mpmath.mpf(p2))


def test_renyi_one_ulp_apart_claims_no_more_than_cohen():
    """The pair Hypothesis once drew: p1 one ulp above p2, where Renyi returned 1.05e-8 and Cohen 0."""
    p1, p2 = 0.11377373207242239, 0.11377373207242238
    assert renyi_l2_radius(p1, p2, 1.0) <= float(_exact_cohen(p1, p2, 1.0))
    assert renyi_l2_radius(p1, p2, 1.0) <= cohen_l2_radius(p1, p2, 1.0)


@st.composite
def near_ties(draw):
    """Top-two probabilities, often a few ulps apart (where rounding dominates the radius)."""
    p2 = draw(st.floats(1e-6, 0.49, allow_nan=False))
    if draw(st.booleans()):
        p1 = p2
        for _ in range(draw(st.integers(1, 64))):
            p1 = float(np.nextafter(p1, 1.0))
    else:
        p1 = draw(st.floats(p2, 1.0 - p2, allow_nan=False))
    return p1, p2


@settings(max_examples=300, deadline=None)
@given(near_ties(), st.floats(1e-3, 10.0))
def test_float_radii_never_exceed_their_exact_values(pair, sigma):
    p1, p2 = pair
    exact_cohen = _exact_cohen(p1, p2, sigma)
    assert renyi_l2_radius(p1, p2, sigma) <= exact_cohen
    assert cohen_l2_radius(p1, p2, sigma) <= exact_cohen
    assert laplace_l1_radius(p1, p2, sigma) <= _exact_laplace(p1, p2, sigma)
    if p1 > 0.5:
        assert cohen_certify_l2_radius(p1, sigma) <= _exact_cohen(p1, 1.0 - p1, sigma)
