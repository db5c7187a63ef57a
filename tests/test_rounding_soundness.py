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


def test_results_files_never_round_a_certificate_up(digits_classifier, digits, tmp_path, monkeypatch):
    """The written radii are what `art-stn plot`, `summary` and every report read: a radius just below a radius asked
    about (1.5799996 written as 1.58 by six-digit rounding) would be counted certified at 1.58. Each written radius
    and `p1_lower` is at most, and `p2_upper` at least, its computed value; `certified_radius` is written exactly."""
    from dataclasses import replace

    from art_stn.evaluate import certify_to_file, read_results

    x, y = digits
    clf = digits_classifier(scale=0.25)
    real = clf.certify_report
    just_below = 1.5799996

    def report(*args, **kwargs):
        rep = real(*args, **kwargs)
        k = len(rep.radius)
        radii = {b: np.full(k, just_below) for b in rep.radii}
        p1, p2 = np.full(k, 0.123456789012), np.full(k, 0.0123456789012)
        return replace(rep, radius=np.full(k, just_below), radii=radii, p1_lower=p1, p2_upper=p2)

    monkeypatch.setattr(clf, "certify_report", report)
    out = certify_to_file(clf, x[:2], y[:2], np.arange(2), tmp_path / "c.tsv", n=32, n0=8, alpha=0.05, verbose=False)
    _, table, _ = read_results(out)
    for column in [c for c in table if c.startswith("radius")]:
        assert np.all(table[column] <= just_below), (column, table[column])
    assert np.all(table["p1_lower"] <= 0.123456789012) and np.all(table["p2_upper"] >= 0.0123456789012)
    third = 1 / 3 + 1 / 3  # a requested radius that six digits round up (0.666667)
    monkeypatch.setattr(clf, "certify_report", real)
    out = certify_to_file(
        clf, x[:2], y[:2], np.arange(2), tmp_path / "s.tsv", n=200, n0=8, alpha=0.05, verbose=False,
        radii=[0.0, third], sequential=True,
    )  # fmt: skip
    _, table, _ = read_results(out)
    assert set(table["certified_radius"]) <= {-1.0, 0.0, third}, table["certified_radius"]
